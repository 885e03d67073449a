//! VUS-ROC / VUS-PR as TSB-AD 1.5 `RangeAUC_volume_opt` (250 thresholds, buffers 0..=window).

/// Volume under the range-ROC and range-PR surfaces.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Vus {
    pub roc: f64,
    pub pr: f64,
}

/// Number of score thresholds TSB-AD uses for VUS.
pub const VUS_THRESHOLDS: usize = 250;

/// VUS over buffer sizes `0..=window`; `None` when the labels hold no anomaly.
pub fn vus(labels: &[u8], scores: &[f64], window: usize) -> Option<Vus> {
    let _ = (labels, scores, window);
    todo!("helper: metrics-a")
}
