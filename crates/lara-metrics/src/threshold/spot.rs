//! Streaming POT: SPOT and DSPOT (Siffer et al., KDD 2017, §4, Algorithms 1–2; reference
//! `spot.py` classes `SPOT` and `dSPOT`).

use std::collections::VecDeque;

use super::pot::{fit_gpd, gpd_quantile, pot_with_peaks, GpdFit};
use super::ThresholdError;

/// What [`Spot::step`] decided for one observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpotDecision {
    /// Above the current threshold `z_q`: anomalous. The value is not added to the model.
    Alarm,
    /// Between the initial threshold `t` and `z_q`: a new peak; the tail is refitted.
    Peak,
    /// At or below `t`.
    Normal,
    /// Not finite (NaN or ±∞): ignored, the state is unchanged.
    Invalid,
}

/// SPOT / DSPOT streaming threshold.
///
/// Initialised by [`super::pot`] on a calibration batch; then every [`Spot::step`]:
/// - `x > z_q` → [`SpotDecision::Alarm`]; the model is not updated (not even the count `n`, as
///   the reference `SPOT.run` with alarms).
/// - `t < x ≤ z_q` → [`SpotDecision::Peak`]: `x − t` joins the peaks, `n += 1`, the GPD is
///   refitted (Grimshaw, [`super::fit_gpd`]) and `z_q` recomputed.
/// - otherwise [`SpotDecision::Normal`]: `n += 1`; `z_q` is kept until the next peak (as the
///   paper's Algorithm 1 and the reference).
///
/// Because alarms never enter the peaks, the tail fit is censored at `z_q`: on a long
/// stationary stream the fitted γ drifts down a little and `z_q` with it, so the false-alarm
/// rate ends somewhat above `risk` (inherent to SPOT; e.g. 0–7 alarms instead of 2 over 20 000
/// exponential samples at `risk = 1e-4`).
///
/// DSPOT ([`Spot::with_drift`]) applies the same rule to `x − M`, where `M` is the mean of the
/// last `depth` non-alarm observations (Algorithm 2).
///
/// Each peak costs a refit, `O(#peaks)` times a few hundred evaluations.
#[derive(Debug, Clone)]
pub struct Spot {
    risk: f64,
    init_threshold: f64,
    peaks: Vec<f64>,
    num_observations: usize,
    fit: GpdFit,
    /// `z_q` on the model scale (drift-corrected for DSPOT).
    extreme_quantile: f64,
    drift: Option<DriftWindow>,
}

/// The last `depth` non-alarm raw observations (DSPOT's local model).
#[derive(Debug, Clone)]
struct DriftWindow {
    depth: usize,
    values: VecDeque<f64>,
}

impl DriftWindow {
    fn mean(&self) -> f64 {
        self.values.iter().sum::<f64>() / self.values.len() as f64
    }

    fn push(&mut self, x: f64) {
        if self.values.len() == self.depth {
            self.values.pop_front();
        }
        self.values.push_back(x);
    }
}

impl Spot {
    /// SPOT calibrated by POT on `calibration` (see [`super::pot`] for the parameters and the
    /// errors).
    pub fn new(calibration: &[f64], risk: f64, init_level: f64) -> Result<Self, ThresholdError> {
        let (pot, peaks) = pot_with_peaks(calibration, risk, init_level)?;
        Ok(Spot {
            risk,
            init_threshold: pot.init_threshold,
            peaks,
            num_observations: pot.num_observations,
            fit: GpdFit { gamma: pot.gamma, sigma: pot.sigma, log_likelihood: pot.log_likelihood },
            extreme_quantile: pot.threshold,
            drift: None,
        })
    }

    /// DSPOT: SPOT on the residuals `x_i − M_i`, with `M_i` the mean of the `depth` previous
    /// values. Calibration uses the residuals of `calibration[depth..]`, so it needs more than
    /// `depth` points ([`ThresholdError::BadDepth`] otherwise, and for `depth = 0`).
    pub fn with_drift(calibration: &[f64], risk: f64, init_level: f64, depth: usize) -> Result<Self, ThresholdError> {
        if depth == 0 || calibration.len() <= depth {
            return Err(ThresholdError::BadDepth);
        }
        if let Some((index, &value)) = calibration.iter().enumerate().find(|(_, x)| !x.is_finite()) {
            return Err(ThresholdError::NonFinite { index, value });
        }
        let mut window = DriftWindow { depth, values: calibration[..depth].iter().copied().collect() };
        let mut residuals = Vec::with_capacity(calibration.len() - depth);
        for &x in &calibration[depth..] {
            residuals.push(x - window.mean());
            window.push(x);
        }
        let mut spot = Spot::new(&residuals, risk, init_level)?;
        spot.drift = Some(window);
        Ok(spot)
    }

    /// Classifies `x` and updates the model (see the type documentation).
    pub fn step(&mut self, x: f64) -> SpotDecision {
        if !x.is_finite() {
            return SpotDecision::Invalid;
        }
        let value = match &self.drift {
            Some(window) => x - window.mean(),
            None => x,
        };
        if value > self.extreme_quantile {
            return SpotDecision::Alarm;
        }
        self.num_observations += 1;
        let decision = if value > self.init_threshold {
            self.peaks.push(value - self.init_threshold);
            // The excesses stay positive and finite, so the fit cannot fail; on the impossible
            // error the previous fit is kept.
            if let Ok(fit) = fit_gpd(&self.peaks) {
                let z = gpd_quantile(self.init_threshold, &fit, self.risk, self.num_observations, self.peaks.len());
                if z.is_finite() {
                    self.fit = fit;
                    self.extreme_quantile = z;
                }
            }
            SpotDecision::Peak
        } else {
            SpotDecision::Normal
        };
        if let Some(window) = &mut self.drift {
            window.push(x);
        }
        decision
    }

    /// Current alarm threshold on the input scale: `x > threshold()` raises an alarm at the
    /// next [`Spot::step`]. For DSPOT this is `z_q + M` with the current local mean `M`.
    pub fn threshold(&self) -> f64 {
        match &self.drift {
            Some(window) => self.extreme_quantile + window.mean(),
            None => self.extreme_quantile,
        }
    }

    /// Initial threshold `t` (on the residual scale for DSPOT).
    pub fn init_threshold(&self) -> f64 {
        self.init_threshold
    }

    /// Current GPD fit of the peaks.
    pub fn fit(&self) -> GpdFit {
        self.fit
    }

    /// Number of peaks `N_t` so far.
    pub fn num_peaks(&self) -> usize {
        self.peaks.len()
    }

    /// Number of non-alarm observations `n` so far (calibration included).
    pub fn num_observations(&self) -> usize {
        self.num_observations
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn exponential(rng: &mut ChaCha8Rng) -> f64 {
        -(1.0 - rng.gen::<f64>()).ln()
    }

    #[test]
    fn spot_flags_an_injected_spike_with_few_false_alarms() {
        let mut rng = ChaCha8Rng::seed_from_u64(42);
        let calibration: Vec<f64> = (0..20_000).map(|_| exponential(&mut rng)).collect();
        let mut spot = Spot::new(&calibration, 1e-4, 0.98).unwrap();
        let initial = spot.threshold();
        assert_eq!(spot.num_peaks(), 399); // above sorted[19 600]
        assert!((initial / -(1e-4f64).ln() - 1.0).abs() < 0.25, "z = {initial}");
        let mut false_alarms = 0;
        let mut spike_flagged = false;
        let (mut peaks, mut normals) = (0, 0);
        for i in 0..20_000 {
            let x = if i == 10_000 { 30.0 } else { exponential(&mut rng) };
            match spot.step(x) {
                SpotDecision::Alarm if i == 10_000 => spike_flagged = true,
                SpotDecision::Alarm => false_alarms += 1,
                SpotDecision::Peak => peaks += 1,
                SpotDecision::Normal => normals += 1,
                SpotDecision::Invalid => unreachable!(),
            }
        }
        assert!(spike_flagged);
        // Nominally 20 000 · 1e-4 = 2; the censoring of alarms biases SPOT slightly low.
        assert!(false_alarms <= 10, "{false_alarms} false alarms");
        assert_eq!(spot.num_peaks(), 399 + peaks);
        assert_eq!(spot.num_observations(), 20_000 + peaks + normals);
        assert!((spot.threshold() / -(1e-4f64).ln() - 1.0).abs() < 0.2, "z = {}", spot.threshold());
    }

    #[test]
    fn dspot_follows_a_drift() {
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let level = |i: usize| 0.002 * i as f64;
        let calibration: Vec<f64> = (0..3000).map(|i| level(i) + exponential(&mut rng)).collect();
        let mut dspot = Spot::with_drift(&calibration, 1e-3, 0.98, 50).unwrap();
        let mut spot = Spot::new(&calibration, 1e-3, 0.98).unwrap();
        let (mut dspot_alarms, mut spot_alarms, mut spike_flagged) = (0, 0, false);
        for i in 3000..8000 {
            let x = level(i) + if i == 6000 { 15.0 } else { exponential(&mut rng) };
            match dspot.step(x) {
                SpotDecision::Alarm if i == 6000 => spike_flagged = true,
                SpotDecision::Alarm => dspot_alarms += 1,
                _ => {}
            }
            if spot.step(x) == SpotDecision::Alarm {
                spot_alarms += 1;
            }
        }
        assert!(spike_flagged);
        assert!(dspot_alarms <= 15, "{dspot_alarms}");
        // Without drift correction the rising level floods SPOT with alarms.
        assert!(spot_alarms > 1000, "{spot_alarms}");
        assert!(dspot.threshold() > level(8000));
    }

    #[test]
    fn invalid_values_and_errors() {
        let calibration: Vec<f64> = (0..200).map(|i| f64::from(i % 17)).collect();
        let mut spot = Spot::new(&calibration, 1e-3, 0.9).unwrap();
        let before = (spot.threshold(), spot.num_observations());
        assert_eq!(spot.step(f64::NAN), SpotDecision::Invalid);
        assert_eq!(spot.step(f64::INFINITY), SpotDecision::Invalid);
        assert_eq!((spot.threshold(), spot.num_observations()), before);
        assert_eq!(spot.step(0.0), SpotDecision::Normal);
        assert_eq!(spot.step(1e9), SpotDecision::Alarm);
        assert_eq!(Spot::with_drift(&calibration, 1e-3, 0.9, 0).unwrap_err(), ThresholdError::BadDepth);
        assert_eq!(Spot::with_drift(&calibration, 1e-3, 0.9, 200).unwrap_err(), ThresholdError::BadDepth);
        assert!(matches!(Spot::new(&[1.0; 10], 1e-3, 0.9), Err(ThresholdError::NoPeaks { .. })));
        assert!(matches!(Spot::with_drift(&[1.0, f64::NAN, 2.0], 1e-3, 0.9, 1), Err(ThresholdError::NonFinite { .. })));
    }
}
