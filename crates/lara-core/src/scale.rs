//! Scalers fitted on the training prefix.
