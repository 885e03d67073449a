//! Settings of the online monitor. Every default is documented with its reason; the evidence
//! for the measured ones is in the crate docs.

use lara_adapt::AdaptConfig;
use lara_vae::FitOptions;
use serde::{Deserialize, Serialize};

/// What the monitor does when the normal pattern changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Policy {
    /// Never adapt: the model stays as it started (the batch detector, made causal).
    Static,
    /// Detect persistent changes and adapt by LARA (default).
    #[default]
    Adapt,
    /// As `Adapt`, plus a full retrain on recent history ([`RetrainPolicy`]).
    AdaptRetrain,
}

impl std::str::FromStr for Policy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "static" => Ok(Policy::Static),
            "adapt" => Ok(Policy::Adapt),
            "adapt+retrain" | "adapt_retrain" => Ok(Policy::AdaptRetrain),
            _ => Err(format!("unknown policy {s:?} (expected static, adapt or adapt+retrain)")),
        }
    }
}

impl std::fmt::Display for Policy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Policy::Static => "static",
            Policy::Adapt => "adapt",
            Policy::AdaptRetrain => "adapt+retrain",
        })
    }
}

/// When a full retrain replaces the base model (policy `adapt+retrain` only).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetrainPolicy {
    Off,
    /// Every `n` rows, on the newest `n` rows.
    EveryRows(usize),
    /// Once a validated new pattern has `n` rows, on those rows (once per pattern).
    AfterPatternRows(usize),
}

/// The sequential change test: a one-sided CUSUM on exceedance indicators of the raw score.
///
/// `e_t = 1` when the raw score's calibrated tail probability is below `1 − level` (a row the
/// model finds unusual), else 0; `S_t = max(0, S_{t−1} + e_t − drift)`. Under the normal
/// pattern `e_t` is 1 about `1 − level` of the time, so `S` stays near 0; a persistent change
/// makes most rows exceed and `S` grows by about `1 − drift` per row. `S ≥ suspect` starts
/// *suspect*, `S ≥ confirm` starts *collecting*; `S` back at 0 dismisses the episode (an
/// incident that ended). The change is estimated to start after the last row where `S` was 0.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ChangeTest {
    pub level: f64,
    pub drift: f64,
    pub suspect: f64,
    pub confirm: f64,
}

impl Default for ChangeTest {
    fn default() -> Self {
        // level 0.99: 1 % of normal rows exceed; drift 0.5: the change must make most rows
        // exceed; suspect after ~10 such rows, collecting after ~20.
        ChangeTest { level: 0.99, drift: 0.5, suspect: 5.0, confirm: 10.0 }
    }
}

/// Everything a [`crate::Monitor`] needs beyond its model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct MonitorConfig {
    pub policy: Policy,
    /// `K`: rows of a new pattern LARA adapts from (default 40, the paper's budget).
    pub slots: usize,
    /// Rows a deviation must persist (from its estimated start) before it may become the new
    /// normal; at least `slots`. `None`: one window + `slots` — a short incident echoes in the
    /// scores for up to one window after it ends (every window that still holds it), so an
    /// incident shorter than `slots` rows can never be adopted. Shorter deviations stay
    /// incidents.
    pub persist: Option<usize>,
    pub change: ChangeTest,
    /// Rows after a switch over which the new model is checked against the one it replaced.
    pub validate_rows: usize,
    /// A switch is kept when the new model's mean raw NLL on the validation rows is below the
    /// old model's *and* at most this fraction of them exceed the change-test level.
    pub validate_max_exceed: f64,
    /// A stored pattern is re-selected when at most this fraction of the newest `slots` rows
    /// exceed the change-test level under it.
    pub reselect_max_exceed: f64,
    /// Earlier adapters kept for re-selection (the base model is always kept).
    pub memory: usize,
    /// Rows without a new suspicion after a roll-back (doubled after each further roll-back
    /// in a row, up to 64×).
    pub cooldown: usize,
    pub retrain: RetrainPolicy,
    /// Rows collected before training, for a monitor that starts without a model.
    pub warmup_rows: usize,
    /// Options of the warm-up training and of a full retrain (`None`: the base model's, or
    /// `lara train`'s defaults).
    pub fit: Option<FitOptions>,
    pub adapt: AdaptConfig,
    /// Alarm when a row's score is rarer than this among normal rows (`p_anomaly > 1 −
    /// alarm_risk`); `None`: the model's POT risk (`lara train --risk`, default 10⁻³).
    pub alarm_risk: Option<f64>,
    /// Start a monitor on a shared base model by LARA from its first `slots` rows (cold
    /// start) instead of trusting the base model as it is.
    pub cold_start: bool,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        MonitorConfig {
            policy: Policy::Adapt,
            slots: 40,
            persist: None,
            change: ChangeTest::default(),
            validate_rows: 20,
            validate_max_exceed: 0.25,
            reselect_max_exceed: 0.1,
            memory: 4,
            cooldown: 200,
            retrain: RetrainPolicy::AfterPatternRows(1000),
            warmup_rows: 0,
            fit: None,
            adapt: AdaptConfig::default(),
            cold_start: false,
            alarm_risk: None,
        }
    }
}

impl MonitorConfig {
    /// Checks the settings; the message names the field.
    pub fn validate(&self) -> Result<(), String> {
        if self.slots == 0 {
            return Err("slots must be at least 1".into());
        }
        if self.validate_rows == 0 {
            return Err("validate_rows must be at least 1".into());
        }
        let c = &self.change;
        if !(c.level > 0.0 && c.level < 1.0) {
            return Err(format!("change.level must lie in (0, 1), got {}", c.level));
        }
        if !(c.drift > 0.0 && c.drift < 1.0) {
            return Err(format!("change.drift must lie in (0, 1), got {}", c.drift));
        }
        if !(c.suspect > 0.0 && c.confirm >= c.suspect) {
            return Err("change.suspect must be > 0 and change.confirm ≥ change.suspect".into());
        }
        if let Some(r) = self.alarm_risk {
            if !(r > 0.0 && r < 1.0) {
                return Err(format!("alarm_risk must lie in (0, 1), got {r}"));
            }
        }
        if let RetrainPolicy::EveryRows(0) | RetrainPolicy::AfterPatternRows(0) = self.retrain {
            return Err("a retrain policy needs a positive row count".into());
        }
        self.adapt.validate().map_err(|e| format!("adapt: {e}"))
    }

    /// Rows needed before a change may be adopted, for a model of window `w`.
    pub fn persist_rows(&self, window: usize) -> usize {
        self.persist.unwrap_or(window + self.slots).max(self.slots)
    }
}
