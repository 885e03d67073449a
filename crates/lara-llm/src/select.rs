//! Cost control: which windows the LLM is asked about.
//!
//! At most `budget` windows: the `budget − n_random` windows the detector finds most suspicious
//! (highest score; ties → lower index; NaN scores never count as suspicious) plus a seeded uniform
//! random sample of `n_random = round(budget · random_fraction)` of the remaining windows, which
//! gives the alignment and the fusion an unbiased calibration sample (mostly normal windows).

use rand::seq::index::sample;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::error::LlmError;

/// The windows chosen for the LLM.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct WindowSelection {
    /// Most suspicious windows by detector score, in decreasing score order.
    pub top: Vec<usize>,
    /// Seeded random calibration sample (disjoint from `top`), ascending.
    pub random: Vec<usize>,
}

impl WindowSelection {
    /// All selected window indices, ascending, without duplicates.
    pub fn all(&self) -> Vec<usize> {
        let mut v: Vec<usize> = self.top.iter().chain(&self.random).copied().collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}

/// Select at most `budget` windows from detector window scores (see module docs).
/// `random_fraction` must be in [0, 1]. Deterministic for a given `seed`.
pub fn select_windows(
    detector_scores: &[f64],
    budget: usize,
    random_fraction: f64,
    seed: u64,
) -> Result<WindowSelection, LlmError> {
    if !(0.0..=1.0).contains(&random_fraction) {
        return Err(LlmError::InvalidInput(format!("random_fraction {random_fraction} is not in [0, 1]")));
    }
    let n = detector_scores.len();
    let budget = budget.min(n);
    let n_random = ((budget as f64) * random_fraction).round() as usize;
    let n_top = budget - n_random.min(budget);
    let mut order: Vec<usize> = (0..n).collect();
    // NaN sorts last (least suspicious).
    let key = |i: usize| {
        let s = detector_scores[i];
        if s.is_nan() {
            f64::NEG_INFINITY
        } else {
            s
        }
    };
    order.sort_by(|&a, &b| key(b).total_cmp(&key(a)).then(a.cmp(&b)));
    let top: Vec<usize> = order[..n_top].to_vec();
    let rest: Vec<usize> = order[n_top..].to_vec();
    let k = (budget - n_top).min(rest.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut random: Vec<usize> = sample(&mut rng, rest.len(), k).into_iter().map(|j| rest[j]).collect();
    random.sort_unstable();
    Ok(WindowSelection { top, random })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_and_random_are_disjoint_and_seeded() {
        let scores: Vec<f64> = (0..100).map(|i| ((i * 37) % 100) as f64).collect();
        let s = select_windows(&scores, 10, 0.3, 7).unwrap();
        assert_eq!(s.top.len(), 7);
        assert_eq!(s.random.len(), 3);
        assert_eq!(s.top[0], scores.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).unwrap().0);
        assert!(s.random.iter().all(|r| !s.top.contains(r)));
        assert_eq!(s, select_windows(&scores, 10, 0.3, 7).unwrap());
        assert_ne!(s.random, select_windows(&scores, 10, 0.3, 8).unwrap().random);
        assert_eq!(s.all().len(), 10);
    }

    #[test]
    fn edge_cases() {
        assert!(select_windows(&[], 5, 0.5, 0).unwrap().all().is_empty());
        assert_eq!(select_windows(&[1.0, 2.0], 5, 0.0, 0).unwrap().top, vec![1, 0]);
        let s = select_windows(&[f64::NAN, 1.0, 0.5], 1, 0.0, 0).unwrap();
        assert_eq!(s.top, vec![1]);
        assert!(select_windows(&[1.0], 1, 1.5, 0).is_err());
        assert_eq!(select_windows(&[1.0, 2.0, 3.0], 3, 1.0, 0).unwrap().random, vec![0, 1, 2]);
    }
}
