//! PA%K (Kim et al., AAAI 2022).
