//! TSB-AD's ACF period estimate (`find_length_rank(rank=1)`).
