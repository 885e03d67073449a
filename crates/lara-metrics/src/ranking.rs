//! Threshold-free point metrics: AUC-ROC (`sklearn.metrics.roc_auc_score`) and AUC-PR
//! (`sklearn.metrics.average_precision_score`), ties handled as sklearn does.

/// AUC-ROC; `None` when the labels hold a single class.
pub fn auc_roc(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-a")
}

/// Average precision; `None` when the labels hold no anomaly.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let _ = (labels, scores);
    todo!("helper: metrics-a")
}
