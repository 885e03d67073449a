//! Affiliation precision / recall (Huet et al., KDD 2022).

/// Best affiliation F over the 100 linspace thresholds.
pub fn affiliation_f(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-b")
}
