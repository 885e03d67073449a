//! Point-wise F1 family: Standard-F1, point-adjusted F1 (PA-F1) and Event-based F1.

/// Best F1 over every distinct score threshold (sklearn `precision_recall_curve`,
/// `2PR/(P+R+1e-5)`); `None` when the labels hold no anomaly.
pub fn standard_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-a")
}

/// Point adjustment as TSB-AD `_adjust_predicts`.
pub fn point_adjust(labels: &[u8], pred: &[bool]) -> Vec<bool> {
    let _ = (labels, pred);
    todo!("helper: metrics-a")
}

/// Best PA-F1 over the 100 linspace thresholds (strict `>`).
pub fn pa_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-a")
}

/// Best Event-based F1 over the 100 linspace thresholds.
pub fn event_f1(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-a")
}
