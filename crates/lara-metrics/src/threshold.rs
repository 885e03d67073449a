//! Label-free thresholds: POT, SPOT (Siffer et al., KDD 2017), mean + k·σ, top-k %.
