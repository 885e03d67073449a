//! Range-based precision / recall / F1 (Tatbul et al. 2018) as TSB-AD's `range_recall_new`.

/// Best range-based F1 over the 100 linspace thresholds.
pub fn range_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-a")
}
