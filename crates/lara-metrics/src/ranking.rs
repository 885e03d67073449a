//! Threshold-free point metrics: AUC-ROC (`sklearn.metrics.roc_auc_score`) and AUC-PR
//! (`sklearn.metrics.average_precision_score`), ties handled as sklearn does.

/// One point of sklearn's `_binary_clf_curve`: at a distinct score value `v` (visited from the
/// highest down), the number of anomalies (`tp`) and normal points (`fp`) with score `>= v`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CurvePoint {
    pub tp: u64,
    pub fp: u64,
}

/// The cumulative counts at every distinct score value, highest score first, as sklearn's
/// `_binary_clf_curve` (exactly equal scores form one threshold). Entries past
/// `min(labels.len(), scores.len())` are ignored.
pub fn binary_clf_curve(labels: &[u8], scores: &[f64]) -> Vec<CurvePoint> {
    let n = labels.len().min(scores.len());
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| scores[b].total_cmp(&scores[a]));
    let mut curve = Vec::new();
    let (mut tp, mut fp) = (0u64, 0u64);
    for (pos, &i) in order.iter().enumerate() {
        if labels[i] == 1 {
            tp += 1;
        } else {
            fp += 1;
        }
        // `==` (not `total_cmp`) so that -0.0 and 0.0 tie, as with numpy's `diff`.
        let last_of_value = match order.get(pos + 1) {
            Some(&j) => scores[j] != scores[i],
            None => true,
        };
        if last_of_value {
            curve.push(CurvePoint { tp, fp });
        }
    }
    curve
}

/// AUC-ROC as `sklearn.metrics.roc_auc_score` (trapezoidal area under the ROC curve whose
/// points are the distinct score values).
///
/// `None` when the labels hold a single class (sklearn raises), or when the series is empty.
pub fn auc_roc(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let curve = binary_clf_curve(labels, scores);
    let last = *curve.last()?;
    let (pos, neg) = (last.tp, last.fp);
    if pos == 0 || neg == 0 {
        return None;
    }
    // Twice the area in units of (1/neg) x (1/pos), accumulated exactly in integers.
    let mut twice_area: u128 = 0;
    let mut prev = CurvePoint { tp: 0, fp: 0 };
    for p in &curve {
        twice_area += u128::from(p.fp - prev.fp) * u128::from(p.tp + prev.tp);
        prev = *p;
    }
    Some(twice_area as f64 / (2.0 * pos as f64 * neg as f64))
}

/// Average precision as `sklearn.metrics.average_precision_score`:
/// `Σ_k (R_k − R_{k−1}) · P_k` over the distinct score values, highest first.
///
/// `None` when the labels hold no anomaly (sklearn warns and returns a meaningless `-0.0`),
/// or when the series is empty. All-anomaly labels give 1.0, as in sklearn.
pub fn average_precision(labels: &[u8], scores: &[f64]) -> Option<f64> {
    let curve = binary_clf_curve(labels, scores);
    let pos = curve.last()?.tp;
    if pos == 0 {
        return None;
    }
    let mut ap = 0.0;
    let mut prev_recall = 0.0;
    for p in &curve {
        let recall = p.tp as f64 / pos as f64;
        let precision = p.tp as f64 / (p.tp + p.fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Some(ap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sklearn_docstring_example() {
        // sklearn's precision_recall_curve / roc_auc_score docstring examples.
        let labels = [0, 0, 1, 1];
        let scores = [0.1, 0.4, 0.35, 0.8];
        assert!((auc_roc(&labels, &scores).unwrap() - 0.75).abs() < 1e-12);
        assert!((average_precision(&labels, &scores).unwrap() - 0.8333333333333333).abs() < 1e-12);
    }

    #[test]
    fn ties_form_one_threshold() {
        let labels = [0, 1, 1, 0, 0, 1];
        let scores = [0.0; 6];
        assert_eq!(binary_clf_curve(&labels, &scores), vec![CurvePoint { tp: 3, fp: 3 }]);
        assert_eq!(auc_roc(&labels, &scores), Some(0.5));
        assert_eq!(average_precision(&labels, &scores), Some(0.5));
        // -0.0 and 0.0 are the same threshold.
        assert_eq!(binary_clf_curve(&[1, 0], &[-0.0, 0.0]).len(), 1);
    }

    #[test]
    fn undefined_cases_are_none() {
        assert_eq!(auc_roc(&[1, 1, 1], &[0.1, 0.2, 0.3]), None);
        assert_eq!(auc_roc(&[0, 0, 0], &[0.1, 0.2, 0.3]), None);
        assert_eq!(average_precision(&[0, 0, 0], &[0.1, 0.2, 0.3]), None);
        assert_eq!(average_precision(&[1, 1, 1], &[0.1, 0.2, 0.3]), Some(1.0));
        assert_eq!(auc_roc(&[], &[]), None);
        assert_eq!(average_precision(&[], &[]), None);
    }
}
