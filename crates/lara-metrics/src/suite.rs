//! The full metric suite, as TSB-AD 1.5's `get_metrics(score, labels, slidingWindow)`.

use crate::{affiliation, check_inputs, f1, range, ranking, vus, MetricsError};
use serde::Serialize;

/// All metrics of `get_metrics`. `None` where TSB-AD is undefined (no anomaly, or no normal
/// point, in the labels).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricSuite {
    #[serde(rename = "AUC-PR")]
    pub auc_pr: Option<f64>,
    #[serde(rename = "AUC-ROC")]
    pub auc_roc: Option<f64>,
    #[serde(rename = "VUS-PR")]
    pub vus_pr: Option<f64>,
    #[serde(rename = "VUS-ROC")]
    pub vus_roc: Option<f64>,
    #[serde(rename = "Standard-F1")]
    pub standard_f1: Option<f64>,
    #[serde(rename = "PA-F1")]
    pub pa_f1: Option<f64>,
    #[serde(rename = "Event-based-F1")]
    pub event_f1: Option<f64>,
    #[serde(rename = "R-based-F1")]
    pub range_f1: Option<f64>,
    #[serde(rename = "Affiliation-F")]
    pub affiliation_f: Option<f64>,
}

impl MetricSuite {
    /// `(TSB-AD name, value)` in TSB-AD's order.
    pub fn named(&self) -> [(&'static str, Option<f64>); 9] {
        [
            ("AUC-PR", self.auc_pr),
            ("AUC-ROC", self.auc_roc),
            ("VUS-PR", self.vus_pr),
            ("VUS-ROC", self.vus_roc),
            ("Standard-F1", self.standard_f1),
            ("PA-F1", self.pa_f1),
            ("Event-based-F1", self.event_f1),
            ("R-based-F1", self.range_f1),
            ("Affiliation-F", self.affiliation_f),
        ]
    }
}

/// Computes every metric of `get_metrics(score, labels, slidingWindow=window)` (version `opt`,
/// 250 VUS thresholds, oracle thresholds for the F1 family).
pub fn evaluate(labels: &[u8], scores: &[f64], window: usize) -> Result<MetricSuite, MetricsError> {
    check_inputs(labels, scores)?;
    let v = vus::vus(labels, scores, window);
    Ok(MetricSuite {
        auc_pr: ranking::average_precision(labels, scores),
        auc_roc: ranking::auc_roc(labels, scores),
        vus_pr: v.map(|v| v.pr),
        vus_roc: v.map(|v| v.roc),
        standard_f1: f1::standard_f1(labels, scores),
        pa_f1: f1::pa_f1(labels, scores),
        event_f1: f1::event_f1(labels, scores),
        range_f1: range::range_f1(labels, scores),
        affiliation_f: affiliation::affiliation_f(labels, scores),
    })
}
