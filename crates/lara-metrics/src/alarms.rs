//! Alarm quality at one fixed (label-free) threshold, as an operator sees it: how many alarm
//! episodes point at a real incident, how many incidents raised an alarm, and how often rows
//! that are normal are alarmed.
//!
//! * An **event** is a maximal run of label-1 rows; an **alarm episode** is a maximal run of
//!   alarmed rows (`lara_metrics::runs`).
//! * Event precision = alarm episodes that overlap an event (optionally within `slack` rows of
//!   it) / alarm episodes; `None` when nothing is alarmed.
//! * Event recall = events overlapped by an alarm episode (within `slack`) / events; `None`
//!   when nothing is labelled.
//! * Alarm rate on normal rows = alarmed label-0 rows / label-0 rows; `None` when there are
//!   none.
//!
//! `slack` widens each event by that many rows on both sides before the overlap test: a
//! detector whose smoothed score crosses the threshold a little before or after a labelled
//! incident still points the operator at it. Use 0 for strict overlap.

use serde::Serialize;

use crate::runs;

/// Event-level alarm quality at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AlarmQuality {
    pub events: usize,
    pub episodes: usize,
    pub event_precision: Option<f64>,
    pub event_recall: Option<f64>,
    pub normal_alarm_rate: Option<f64>,
}

/// Alarm quality of `alarmed` against `labels` (same length; see the module docs).
pub fn alarm_quality(labels: &[u8], alarmed: &[bool], slack: usize) -> AlarmQuality {
    assert_eq!(labels.len(), alarmed.len(), "alarm_quality: labels and alarms differ in length");
    let events = runs(labels.iter().map(|&l| l == 1));
    let episodes = runs(alarmed.iter().copied());
    let n = labels.len();
    let overlaps = |(a0, a1): (usize, usize), (e0, e1): (usize, usize)| {
        let (e0, e1) = (e0.saturating_sub(slack), (e1 + slack).min(n.saturating_sub(1)));
        a0 <= e1 && e0 <= a1
    };
    // Both lists are sorted and disjoint: a linear merge would do, but episode counts are small
    // enough after smoothing that the quadratic test stays cheap; keep it obviously right.
    let true_episodes = episodes.iter().filter(|&&a| events.iter().any(|&e| overlaps(a, e))).count();
    let found_events = events.iter().filter(|&&e| episodes.iter().any(|&a| overlaps(a, e))).count();
    let normal = labels.iter().filter(|&&l| l == 0).count();
    let false_rows = labels.iter().zip(alarmed).filter(|&(&l, &a)| l == 0 && a).count();
    AlarmQuality {
        events: events.len(),
        episodes: episodes.len(),
        event_precision: (!episodes.is_empty()).then(|| true_episodes as f64 / episodes.len() as f64),
        event_recall: (!events.is_empty()).then(|| found_events as f64 / events.len() as f64),
        normal_alarm_rate: (normal > 0).then(|| false_rows as f64 / normal as f64),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(s: &str) -> Vec<bool> {
        s.bytes().map(|b| b == b'1').collect()
    }
    fn lab(s: &str) -> Vec<u8> {
        s.bytes().map(|b| b - b'0').collect()
    }

    #[test]
    fn counts_episodes_and_events() {
        // events at 2..=3 and 8..=9; alarms at 3, 5..=6, 9.
        let q = alarm_quality(&lab("0011000011"), &mask("0001011001"), 0);
        assert_eq!((q.events, q.episodes), (2, 3));
        assert_eq!(q.event_precision, Some(2.0 / 3.0));
        assert_eq!(q.event_recall, Some(1.0));
        assert_eq!(q.normal_alarm_rate, Some(2.0 / 6.0));
    }

    #[test]
    fn slack_counts_near_misses() {
        let l = lab("0001100000");
        let a = mask("0100000100");
        assert_eq!(alarm_quality(&l, &a, 0).event_recall, Some(0.0));
        let q = alarm_quality(&l, &a, 2);
        assert_eq!(q.event_recall, Some(1.0));
        assert_eq!(q.event_precision, Some(0.5));
    }

    #[test]
    fn undefined_cases_are_none() {
        let q = alarm_quality(&lab("0000"), &mask("0000"), 0);
        assert_eq!((q.event_precision, q.event_recall), (None, None));
        assert_eq!(q.normal_alarm_rate, Some(0.0));
        let q = alarm_quality(&lab("11"), &mask("11"), 0);
        assert_eq!(q.normal_alarm_rate, None);
        assert_eq!(q.event_precision, Some(1.0));
    }
}
