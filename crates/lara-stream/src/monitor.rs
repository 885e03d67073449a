//! The per-entity online monitor (see the crate docs for the life cycle and its rules).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Instant;

use lara_core::Series;
use lara_vae::{causal_windows, top_k, Adaptation, Detector, FitOptions, ModelView, OnlineCalibration, TrailingMean};
use serde::{Deserialize, Serialize};

use crate::config::{MonitorConfig, Policy, RetrainPolicy};
use crate::StreamError;

/// Where a monitor is in its life cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    /// Collecting history before there is a model (or the first `slots` rows of a cold
    /// start on a shared base model).
    Warmup,
    /// Scoring with a model that explains the current pattern.
    Normal,
    /// The change test crossed its first level: a sustained deviation may be starting.
    Suspect,
    /// The deviation persists: its rows are collected as the candidate new pattern.
    Collecting,
    /// A new model (adapter or re-selected pattern) scores; it is being validated.
    Adapted,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Warmup => "warmup",
            State::Normal => "normal",
            State::Suspect => "suspect",
            State::Collecting => "collecting",
            State::Adapted => "adapted",
        }
    }
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The result for one row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Scored {
    /// Index of the row since the monitor started (0-based).
    pub row: u64,
    /// Published score: trailing mean of the raw causal scores (NaN before a model exists).
    pub score: f64,
    pub threshold: f64,
    pub is_anomaly: bool,
    /// Calibrated probability that a normal row scores at most this (see the crate docs).
    pub p_anomaly: f64,
    pub state: State,
    /// Version of the model that scored the row (0 before a model exists; +1 per switch).
    pub model_version: u32,
    /// Columns contributing most to the score (indices into the model's columns).
    pub top_dims: Vec<usize>,
}

/// A decision of the monitor, with its evidence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Row at which the decision was taken.
    pub row: u64,
    /// `train`, `suspect`, `collect`, `dismiss`, `adapt`, `reselect`, `validate`,
    /// `rollback`, `retrain`, `error`.
    pub kind: String,
    /// State after the decision.
    pub state: State,
    /// Model version after the decision.
    pub model_version: u32,
    /// The change test's statistic when it mattered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub statistic: Option<f64>,
    /// First and last row (inclusive) of the data the decision used.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rows: Option<[u64; 2]>,
    /// Mean raw NLL of those rows under the model before / after the decision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll_before: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nll_after: Option<f64>,
    /// Wall time the decision took (not part of the deterministic output).
    pub elapsed_ms: f64,
    pub detail: String,
}

/// One model the monitor can score with: the base VAE plus an optional adapter, and the
/// calibration of its causal scores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pattern {
    /// Version number this pattern got when it was created.
    pub id: u32,
    pub adaptation: Option<Adaptation>,
    pub online: OnlineCalibration,
    /// Rows it was fitted on (`None` for the base model).
    pub fitted_rows: Option<[u64; 2]>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Cusum {
    s: f64,
    /// Estimated start of the current excursion (the row after `s` was last 0).
    start: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Validation {
    rows: usize,
    sum_new: f64,
    sum_old: f64,
    exceed: usize,
    /// Segment start of the model that was replaced (restored on a roll-back).
    old_seg_start: u64,
    /// The new model is a re-selected stored pattern (kept stored if it fails).
    reselected: bool,
}

/// The monitor's whole state except the base model (plain data; serialized by
/// [`Monitor::snapshot`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MonitorState {
    pub config: MonitorConfig,
    pub columns: Vec<String>,
    /// SHA-256 of the base model's bytes (checked on restore).
    pub base_sha256: String,
    pub rows_seen: u64,
    pub state: State,
    pub version: u32,
    pub current: Option<Pattern>,
    /// During validation: the id of the pattern the switch replaced (kept in `memory`).
    previous: Option<u32>,
    /// Validated patterns other than the current one (the base model's first while it is
    /// not current): each pattern is stored once.
    pub memory: Vec<Pattern>,
    /// The newest raw rows (row-major), `history_start` = index of the first.
    history: VecDeque<f32>,
    history_start: u64,
    /// First row of the current pattern's segment (windows never reach before it).
    seg_start: u64,
    smoother: TrailingMean,
    cusum: Cusum,
    change_start: Option<u64>,
    cooldown_until: u64,
    /// Roll-backs since the last validated switch (the cooldown doubles with each).
    rollbacks_in_a_row: u32,
    validation: Option<Validation>,
    /// Rows of the current segment when the last retrain happened (once per pattern).
    retrained_seg: Option<u64>,
    /// The pattern (and its segment start) the latest switch replaced: what an operator's
    /// roll-back returns to.
    #[serde(default)]
    rollback_point: Option<(u32, u64)>,
    last_retrain: u64,
}

impl MonitorState {
    /// A monitor that has seen no row: no model yet, an empty history.
    fn fresh(config: MonitorConfig, columns: Vec<String>, state: State, smooth: usize) -> MonitorState {
        let m = columns.len();
        MonitorState {
            columns,
            base_sha256: String::new(),
            rows_seen: 0,
            state,
            version: 0,
            current: None,
            previous: None,
            memory: Vec::new(),
            history: VecDeque::new(),
            history_start: 0,
            seg_start: 0,
            smoother: TrailingMean::new(smooth, m),
            cusum: Cusum { s: 0.0, start: 0 },
            change_start: None,
            cooldown_until: 0,
            rollbacks_in_a_row: 0,
            validation: None,
            retrained_seg: None,
            rollback_point: None,
            last_retrain: 0,
            config,
        }
    }
}

/// The online monitor of one entity. Synchronous and deterministic: the same rows give the
/// same results however they are batched, and a restored snapshot continues identically.
#[derive(Debug, Clone)]
pub struct Monitor {
    base: Option<Arc<Detector>>,
    /// The base model was trained by this monitor (warm-up or retrain): it travels in the
    /// snapshot. A shared base model does not.
    own_base: bool,
    s: MonitorState,
    events: Vec<Event>,
    warmup_scores: Vec<Scored>,
}

const SNAPSHOT_MAGIC: &[u8; 8] = b"LARAMON1";

/// SHA-256 (hex) of a model's file bytes: how a snapshot names its shared base model.
pub fn model_fingerprint(model: &Detector) -> Result<String, StreamError> {
    Ok(sha256_hex(&model.to_bytes()?))
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

impl Monitor {
    /// A monitor that starts scoring with `model` from its first row (or, with
    /// `config.cold_start`, adapts it by LARA from the first `slots` rows).
    pub fn new(model: Arc<Detector>, config: MonitorConfig) -> Result<Monitor, StreamError> {
        let fingerprint = model_fingerprint(&model)?;
        Monitor::new_shared(model, fingerprint, config)
    }

    /// [`Monitor::new`] with the base model's [`model_fingerprint`] computed once by the
    /// caller (a service creating thousands of monitors on one shared base model).
    pub fn new_shared(
        model: Arc<Detector>,
        fingerprint: String,
        config: MonitorConfig,
    ) -> Result<Monitor, StreamError> {
        config.validate().map_err(StreamError::Config)?;
        let online = model.meta.online.clone().ok_or_else(|| {
            StreamError::Config(
                "the model file has no online calibration (trained before lara-stream); retrain it with this lara"
                    .into(),
            )
        })?;
        let base_pattern = Pattern { id: 1, adaptation: model.meta.adaptation.clone(), online, fitted_rows: None };
        let state = if config.cold_start { State::Warmup } else { State::Normal };
        let mut s = MonitorState::fresh(config, model.meta.columns.clone(), state, model.causal_smooth());
        s.base_sha256 = fingerprint;
        s.version = 1;
        s.current = Some(base_pattern);
        Ok(Monitor { base: Some(model), own_base: false, s, events: Vec::new(), warmup_scores: Vec::new() })
    }

    /// A monitor without a model: it collects `config.warmup_rows` rows, trains on them
    /// (`config.fit` or the defaults), scores them with that model
    /// ([`Monitor::take_warmup_scores`]) and goes on.
    pub fn untrained(columns: Vec<String>, config: MonitorConfig) -> Result<Monitor, StreamError> {
        config.validate().map_err(StreamError::Config)?;
        if columns.is_empty() {
            return Err(StreamError::Config("a monitor needs at least one column".into()));
        }
        // Training needs a few windows; a short warm-up trains on a shorter window (n/2).
        if config.warmup_rows < 20 {
            return Err(StreamError::Config(format!(
                "warmup_rows ({}) is too small to train a model",
                config.warmup_rows
            )));
        }
        let s = MonitorState::fresh(config, columns, State::Warmup, 1);
        Ok(Monitor { base: None, own_base: true, s, events: Vec::new(), warmup_scores: Vec::new() })
    }

    /// Changes the policy from the next row on (e.g. to compare policies on one warm-up).
    pub fn set_policy(&mut self, policy: Policy) {
        self.s.config.policy = policy;
    }

    pub fn state(&self) -> State {
        self.s.state
    }
    pub fn version(&self) -> u32 {
        self.s.version
    }
    pub fn rows_seen(&self) -> u64 {
        self.s.rows_seen
    }
    pub fn columns(&self) -> &[String] {
        &self.s.columns
    }
    pub fn config(&self) -> &MonitorConfig {
        &self.s.config
    }
    /// The base model (None during warm-up).
    pub fn base(&self) -> Option<&Arc<Detector>> {
        self.base.as_ref()
    }
    /// The pattern scoring now.
    pub fn current(&self) -> Option<&Pattern> {
        self.s.current.as_ref()
    }
    /// The pattern memory: validated patterns other than the current one (the base model
    /// first while it is not current).
    pub fn memory(&self) -> &[Pattern] {
        &self.s.memory
    }

    /// Decisions taken since the last call.
    pub fn drain_events(&mut self) -> Vec<Event> {
        std::mem::take(&mut self.events)
    }

    /// The warm-up rows' results, scored by the model trained on them (once, after the
    /// warm-up ended).
    pub fn take_warmup_scores(&mut self) -> Vec<Scored> {
        std::mem::take(&mut self.warmup_scores)
    }

    /// Bytes of the monitor's state beside its row buffer and base model: patterns,
    /// calibrations, smoothing and test state (the service's per-entity cost on a shared
    /// base model).
    pub fn state_bytes_without_rows(&self) -> usize {
        let mut s = self.s.clone();
        s.history.clear();
        serde_json::to_vec(&s).map(|v| v.len()).unwrap_or(0)
    }

    // ------------------------------------------------------------------------------
    // Input checks

    /// Checks a batch before anything changes: every row has the monitor's column count and
    /// only finite values. Errors name the row (1-based within the batch) and the column.
    fn check_rows<R: AsRef<[f32]>>(&self, rows: &[R]) -> Result<(), StreamError> {
        let m = self.s.columns.len();
        for (i, r) in rows.iter().enumerate() {
            let r = r.as_ref();
            if r.len() != m {
                return Err(StreamError::BadRow {
                    row: i + 1,
                    detail: format!("{} values, the monitor has {m} columns", r.len()),
                });
            }
            if let Some(j) = r.iter().position(|v| !v.is_finite()) {
                return Err(StreamError::BadRow {
                    row: i + 1,
                    detail: format!("column {:?} is not a finite number ({})", self.s.columns[j], r[j]),
                });
            }
        }
        Ok(())
    }

    // ------------------------------------------------------------------------------
    // Pushing rows

    /// Scores `rows` (each with the monitor's columns, in time order) and runs the life
    /// cycle. One result per row. On an error nothing changed.
    pub fn push<R: AsRef<[f32]>>(&mut self, rows: &[R]) -> Result<Vec<Scored>, StreamError> {
        self.check_rows(rows)?;
        let mut out = Vec::with_capacity(rows.len());
        let mut j = 0;
        while j < rows.len() {
            if self.base.is_none() {
                // Warm-up without a model: collect until there are enough rows to train.
                self.push_history(rows[j].as_ref());
                out.push(self.unscored(self.s.rows_seen - 1));
                j += 1;
                if self.s.rows_seen as usize >= self.s.config.warmup_rows {
                    self.train_from_warmup()?;
                }
                continue;
            }
            j += self.score_run(&rows[j..], &mut out)?;
        }
        Ok(out)
    }

    /// The alarm threshold of a pattern: its calibrated score at the alarm risk.
    fn alarm_threshold(&self, p: &Pattern) -> f64 {
        match self.s.config.alarm_risk {
            Some(r) => p.online.score.quantile_of_risk(r),
            None => p.online.score.threshold(),
        }
    }

    fn unscored(&self, row: u64) -> Scored {
        Scored {
            row,
            score: f64::NAN,
            threshold: f64::NAN,
            is_anomaly: false,
            p_anomaly: f64::NAN,
            state: State::Warmup,
            model_version: 0,
            top_dims: Vec::new(),
        }
    }

    fn m(&self) -> usize {
        self.s.columns.len()
    }

    /// Rows of history kept: enough context for a window and the newest `slots` rows, and
    /// the rows a retrain uses.
    fn history_cap(&self) -> usize {
        let w = self.base.as_ref().map(|b| b.meta.options.window).unwrap_or(1);
        let mut cap = w + self.s.config.persist_rows(w);
        if self.s.config.policy == Policy::AdaptRetrain {
            cap = cap.max(match self.s.config.retrain {
                RetrainPolicy::Off => 0,
                RetrainPolicy::EveryRows(n) | RetrainPolicy::AfterPatternRows(n) => n,
            });
        }
        if self.base.is_none() {
            cap = cap.max(self.s.config.warmup_rows);
        }
        cap
    }

    fn push_history(&mut self, row: &[f32]) {
        self.s.history.extend(row.iter().copied());
        self.s.rows_seen += 1;
        let m = self.m();
        let cap = self.history_cap();
        while self.s.history.len() / m > cap {
            self.s.history.drain(..m);
            self.s.history_start += 1;
        }
    }

    /// Raw rows `[a, b)` (absolute indices, inside the history), row-major.
    fn history_rows(&self, a: u64, b: u64) -> Vec<f32> {
        let m = self.m();
        let (i, k) = ((a - self.s.history_start) as usize * m, (b - self.s.history_start) as usize * m);
        self.s.history.range(i..k).copied().collect()
    }

    /// Rows `[a, b)` of the history, scaled by the base scaler.
    fn scaled_history(&self, a: u64, b: u64) -> Vec<f32> {
        let mut v = self.history_rows(a, b);
        if let Some(base) = &self.base {
            base.meta.scaler.transform(&mut v);
        }
        v
    }

    fn view<'a>(&'a self, p: &'a Pattern) -> ModelView<'a> {
        self.base.as_ref().expect("a model exists").view_with(p.adaptation.as_ref())
    }

    /// Scaled windows ending at each of `new` (raw rows following the history), cut at
    /// segment start `seg`.
    fn windows(&self, new: &[f32], seg: u64) -> Vec<f32> {
        let base = self.base.as_ref().expect("a model exists");
        let (m, w) = (self.m(), base.meta.options.window);
        let from = seg.max(self.s.rows_seen.saturating_sub(w as u64 - 1)).max(self.s.history_start);
        let mut ctx = self.scaled_history(from, self.s.rows_seen);
        let mut scaled_new = new.to_vec();
        base.meta.scaler.transform(&mut scaled_new);
        ctx.extend_from_slice(&scaled_new);
        let pad = ctx[..m].to_vec();
        causal_windows(&ctx, m, w, new.len() / m, &pad)
    }

    /// Scores rows with the current model until the model or segment changes; returns how
    /// many rows were consumed (at least 1).
    fn score_run<R: AsRef<[f32]>>(&mut self, rows: &[R], out: &mut Vec<Scored>) -> Result<usize, StreamError> {
        let m = self.m();
        let flat: Vec<f32> = rows.iter().flat_map(|r| r.as_ref().iter().copied()).collect();
        let windows = self.windows(&flat, self.s.seg_start);
        let n = rows.len();
        let cur = self.s.current.clone().expect("a model exists");
        let raw = self.view(&cur).score_windows_last_step(&windows, n)?;
        let raw_old = match (&self.s.validation, self.s.previous.and_then(|id| self.stored(id))) {
            (Some(_), Some(p)) => Some(self.view(p).score_windows_last_step(&windows, n)?),
            _ => None,
        };
        let mut mean_c = vec![0.0f32; m];
        let threshold = self.alarm_threshold(&cur);
        for i in 0..n {
            let r = raw.score[i];
            let score = self.s.smoother.push(r, &raw.contrib[i * m..(i + 1) * m], &mut mean_c);
            let p_anomaly = cur.online.score.p_anomaly(score);
            let version = self.s.version;
            self.push_history(rows[i].as_ref());
            let t = self.s.rows_seen - 1;
            let exceed = cur.online.raw.p_anomaly(r) > self.s.config.change.level;
            let switched = self.step(t, r, exceed, raw_old.as_ref().map(|o| o.score[i]))?;
            out.push(Scored {
                row: t,
                score,
                threshold,
                is_anomaly: score > threshold,
                p_anomaly,
                state: self.s.state,
                model_version: version,
                top_dims: top_k(&mean_c, 3),
            });
            if switched {
                return Ok(i + 1);
            }
        }
        Ok(n)
    }

    fn event(&mut self, row: u64, kind: &str, detail: String) -> &mut Event {
        self.events.push(Event {
            row,
            kind: kind.into(),
            state: self.s.state,
            model_version: self.s.version,
            statistic: None,
            rows: None,
            nll_before: None,
            nll_after: None,
            elapsed_ms: 0.0,
            detail,
        });
        self.events.last_mut().expect("just pushed")
    }

    /// The life cycle after row `t` was scored. Returns true when the model or the segment
    /// changed (the rest of the batch must be scored again).
    fn step(&mut self, t: u64, raw: f64, exceed: bool, raw_old: Option<f64>) -> Result<bool, StreamError> {
        let cfg = self.s.config.clone();
        // The change test.
        let c = &mut self.s.cusum;
        c.s = (c.s + if exceed { 1.0 } else { 0.0 } - cfg.change.drift).max(0.0);
        if c.s == 0.0 {
            c.start = t + 1;
        }
        let stat = c.s;
        if let Some(v) = &mut self.s.validation {
            v.rows += 1;
            v.sum_new += raw;
            v.sum_old += raw_old.unwrap_or(raw);
            v.exceed += exceed as usize;
            if v.rows >= cfg.validate_rows {
                return Ok(self.finish_validation(t));
            }
            return Ok(false);
        }
        if cfg.policy == Policy::Static {
            return Ok(false);
        }
        match self.s.state {
            State::Warmup => {
                // Cold start on a shared base: adapt from the first `slots` rows.
                if t + 1 >= cfg.slots as u64 {
                    return self.adopt(t, 0);
                }
            }
            State::Normal | State::Adapted => {
                if self.retrain_due(t) {
                    return self.retrain(t);
                }
                if stat >= cfg.change.suspect && t >= self.s.cooldown_until {
                    self.s.state = State::Suspect;
                    self.s.change_start = Some(self.s.cusum.start);
                    let e = self.event(t, "suspect", "sustained exceedances of the raw score".into());
                    e.statistic = Some(stat);
                }
            }
            State::Suspect | State::Collecting => {
                if stat == 0.0 {
                    self.s.state = State::Normal;
                    let start = self.s.change_start.take().unwrap_or(t);
                    let e = self.event(t, "dismiss", "the deviation ended: an incident, not a new pattern".into());
                    e.rows = Some([start, t]);
                    return Ok(false);
                }
                let start = self.s.change_start.unwrap_or(t);
                if self.s.state == State::Suspect && stat >= cfg.change.confirm {
                    self.s.state = State::Collecting;
                    let e = self.event(t, "collect", format!("collecting {} slots of the new pattern", cfg.slots));
                    e.statistic = Some(stat);
                    e.rows = Some([start, t]);
                }
                let w = self.base.as_ref().map(|b| b.meta.options.window).unwrap_or(1);
                if self.s.state == State::Collecting && t + 1 - start >= cfg.persist_rows(w) as u64 {
                    return self.adopt(t, start);
                }
            }
        }
        Ok(false)
    }

    fn retrain_due(&self, t: u64) -> bool {
        if self.s.config.policy != Policy::AdaptRetrain || self.s.state != State::Normal {
            return false;
        }
        match self.s.config.retrain {
            RetrainPolicy::Off => false,
            RetrainPolicy::EveryRows(n) => t + 1 - self.s.last_retrain >= n as u64,
            RetrainPolicy::AfterPatternRows(n) => {
                self.s.seg_start > 0
                    && self.s.retrained_seg != Some(self.s.seg_start)
                    && t + 1 - self.s.seg_start >= n as u64
            }
        }
    }

    /// Mean raw score and exceedance fraction of the newest `k` rows up to `t` under `p`,
    /// with windows cut at `a` (the candidate segment start).
    fn evaluate(&self, p: &Pattern, a: u64, t: u64, k: usize) -> Result<(f64, f64), StreamError> {
        let base = self.base.as_ref().expect("a model exists");
        let (m, w) = (self.m(), base.meta.options.window);
        let ctx = self.scaled_history(a, t + 1);
        let n = ((t + 1 - a) as usize).min(k);
        let windows = causal_windows(&ctx, m, w, n, &ctx[..m]);
        let rr = self.view(p).score_windows_last_step(&windows, n)?;
        let lvl = self.s.config.change.level;
        let exceed = rr.score.iter().filter(|&&r| p.online.raw.p_anomaly(r) > lvl).count();
        Ok((rr.score.iter().sum::<f64>() / n as f64, exceed as f64 / n as f64))
    }

    /// A persistent change: re-select a stored pattern that explains the newest `slots`
    /// rows, else adapt by LARA on them. Starts validation.
    fn adopt(&mut self, t: u64, change_start: u64) -> Result<bool, StreamError> {
        let timer = Instant::now();
        let cfg = self.s.config.clone();
        // The newest `slots` windows: the rows they cover (`slots + w − 1`) all lie after the
        // change once it persisted `persist ≥ w + slots` rows; at a cold start only the rows
        // seen so far (the windows are then left-padded).
        let w = self.base.as_ref().expect("a model exists").meta.options.window as u64;
        let slots = cfg.slots;
        let rows = (cfg.slots as u64 + w - 1).min(t + 1 - self.s.history_start.max(change_start));
        let a = t + 1 - rows;
        let k = slots.min(rows as usize);
        let cur = self.s.current.clone().expect("a model exists");
        let (nll_before, _) = self.evaluate(&cur, a, t, k)?;
        // Pattern memory first.
        let mut best: Option<(f64, usize)> = None;
        for (i, p) in self.s.memory.iter().enumerate() {
            if p.id == cur.id {
                continue;
            }
            let (mean, exc) = self.evaluate(p, a, t, k)?;
            if exc <= cfg.reselect_max_exceed && best.is_none_or(|(b, _)| mean < b) {
                best = Some((mean, i));
            }
        }
        let (next, kind, nll_after, detail) = if let Some((mean, i)) = best {
            let p = self.s.memory[i].clone();
            let d = format!("pattern {} explains the newest {k} slots", p.id);
            (p, "reselect", mean, d)
        } else {
            let base = self.base.as_ref().expect("a model exists");
            let scaled = self.scaled_history(a, t + 1);
            let adapted = base.adapt_pattern(
                cur.adaptation.as_ref(),
                Some(&cur.online),
                &scaled,
                rows as usize,
                &cfg.adapt,
                None,
            );
            let (adaptation, online) = match adapted {
                Ok(x) => x,
                Err(e) => {
                    // LARA could not fit (e.g. constant rows): stay, and say why.
                    self.s.state = State::Normal;
                    self.s.cooldown_until = t + cfg.cooldown as u64;
                    let e = self.event(t, "error", format!("adaptation failed: {e}"));
                    e.rows = Some([a, t]);
                    return Ok(false);
                }
            };
            let p = Pattern {
                id: self.s.version + 1,
                adaptation: Some(adaptation),
                online: online.unwrap_or_else(|| cur.online.clone()),
                fitted_rows: Some([a, t]),
            };
            let (mean, _) = self.evaluate(&p, a, t, k)?;
            let d = format!("LARA from {k} slots, rows {a}..={t} (change estimated to start at row {change_start})");
            (p, "adapt", mean, d)
        };
        let old_seg = self.s.seg_start;
        let reselected = kind == "reselect";
        if reselected {
            self.s.memory.retain(|p| p.id != next.id);
        }
        self.s.rollback_point = Some((cur.id, old_seg));
        self.s.previous = Some(cur.id);
        self.remember(cur);
        self.s.current = Some(next);
        self.s.version += 1;
        self.s.seg_start = a;
        self.s.smoother.reset();
        self.s.cusum = Cusum { s: 0.0, start: t + 1 };
        self.s.change_start = None;
        self.s.state = State::Adapted;
        self.s.validation =
            Some(Validation { rows: 0, sum_new: 0.0, sum_old: 0.0, exceed: 0, old_seg_start: old_seg, reselected });
        let e = self.event(t, kind, detail);
        e.rows = Some([a, t]);
        e.nll_before = Some(nll_before);
        e.nll_after = Some(nll_after);
        e.elapsed_ms = timer.elapsed().as_secs_f64() * 1e3;
        Ok(true)
    }

    fn finish_validation(&mut self, t: u64) -> bool {
        let v = self.s.validation.take().expect("validating");
        let cfg = &self.s.config;
        let (new, old) = (v.sum_new / v.rows as f64, v.sum_old / v.rows as f64);
        let exc = v.exceed as f64 / v.rows as f64;
        let first = t + 1 - v.rows as u64;
        if new < old && exc <= cfg.validate_max_exceed {
            self.s.previous = None;
            self.s.rollbacks_in_a_row = 0;
            self.s.state = State::Normal;
            let e = self.event(t, "validate", format!("{exc:.2} of the validation rows exceed"));
            e.rows = Some([first, t]);
            e.nll_before = Some(old);
            e.nll_after = Some(new);
            false
        } else {
            let prev_id = self.s.previous.take().expect("a rollback point");
            self.s.rollback_point = None;
            let failed = self.s.current.take().expect("a model exists");
            if v.reselected {
                // A stored pattern that did not fit this time stays stored.
                self.remember(failed);
            }
            self.s.current = self.take_stored(prev_id);
            self.s.version += 1;
            self.s.seg_start = v.old_seg_start;
            self.s.smoother.reset();
            self.s.cusum = Cusum { s: 0.0, start: t + 1 };
            self.s.state = State::Normal;
            // Each consecutive roll-back doubles the wait (up to 64×): a deviation that LARA
            // cannot explain is an incident, not a pattern to re-try every few rows.
            let factor = 1u64 << self.s.rollbacks_in_a_row.min(6);
            self.s.rollbacks_in_a_row += 1;
            self.s.cooldown_until = t + factor * self.s.config.cooldown as u64;
            let e = self.event(
                t,
                "rollback",
                format!("the new model did not explain the newest rows better ({exc:.2} exceed)"),
            );
            e.rows = Some([first, t]);
            e.nll_before = Some(old);
            e.nll_after = Some(new);
            true
        }
    }

    /// A stored pattern by id.
    fn stored(&self, id: u32) -> Option<&Pattern> {
        self.s.memory.iter().find(|p| p.id == id)
    }

    /// Removes a stored pattern and returns it.
    fn take_stored(&mut self, id: u32) -> Option<Pattern> {
        let i = self.s.memory.iter().position(|p| p.id == id)?;
        Some(self.s.memory.remove(i))
    }

    /// Stores a pattern being replaced: the base model (no adapter) is always kept, and
    /// the newest `memory` adapted patterns.
    fn remember(&mut self, p: Pattern) {
        if self.s.memory.iter().any(|q| q.id == p.id) {
            return;
        }
        self.s.memory.push(p);
        let limit = self.s.config.memory;
        // The pattern a running validation may return to is never evicted.
        let keep = self.s.previous;
        while self.s.memory.iter().filter(|q| q.adaptation.is_some()).count() > limit {
            let Some(i) = self.s.memory.iter().position(|q| q.adaptation.is_some() && Some(q.id) != keep) else {
                break;
            };
            self.s.memory.remove(i);
        }
    }

    // ------------------------------------------------------------------------------
    // Operator controls

    /// Adapts now on the newest rows (`slots` windows, or the rows seen so far), as if a
    /// persistent change had been confirmed: a stored pattern that explains them is
    /// re-selected, else LARA adapts; validation follows on the next rows.
    pub fn adapt_now(&mut self) -> Result<(), StreamError> {
        if self.base.is_none() || self.s.rows_seen == 0 {
            return Err(StreamError::Config("nothing to adapt to yet: push rows first".into()));
        }
        if self.s.validation.is_some() {
            return Err(StreamError::Config("a switch is being validated; wait for its outcome".into()));
        }
        let t = self.s.rows_seen - 1;
        let start = self.s.history_start.max(self.s.seg_start);
        let n = self.events.len();
        self.adopt(t, start)?;
        if let Some(e) = self.events.get_mut(n) {
            e.detail.push_str(" (requested)");
        }
        Ok(())
    }

    /// Returns to the pattern the latest switch replaced (an operator's roll-back).
    pub fn rollback(&mut self) -> Result<(), StreamError> {
        let Some((id, seg)) = self.s.rollback_point else {
            return Err(StreamError::Config("nothing to roll back to: no switch since the start".into()));
        };
        if self.stored(id).is_none() {
            return Err(StreamError::Config(format!("pattern {id} is no longer stored")));
        }
        self.s.rollback_point = None;
        let p = self.take_stored(id).expect("checked above");
        let from = self.s.current.as_ref().map(|c| c.id).unwrap_or(0);
        if let Some(cur) = self.s.current.take() {
            // A validated (or re-selected) pattern stays stored; a fresh, unvalidated
            // adaptation is dropped.
            if self.s.validation.as_ref().is_none_or(|v| v.reselected) {
                self.remember(cur);
            }
        }
        let t = self.s.rows_seen.saturating_sub(1);
        let to = p.id;
        self.s.current = Some(p);
        self.s.previous = None;
        self.s.validation = None;
        self.s.version += 1;
        self.s.seg_start = seg;
        self.s.smoother.reset();
        self.s.cusum = Cusum { s: 0.0, start: t + 1 };
        self.s.change_start = None;
        self.s.state = State::Normal;
        self.s.cooldown_until = t + self.s.config.cooldown as u64;
        self.event(t, "rollback", format!("requested: pattern {from} → pattern {to}"));
        Ok(())
    }

    fn fit_options(&self) -> FitOptions {
        match (&self.s.config.fit, &self.base) {
            (Some(f), _) => f.clone(),
            (None, Some(b)) => b.meta.options.clone(),
            (None, None) => FitOptions::default(),
        }
    }

    /// Trains a detector on raw history rows `[a, b)`.
    fn train_on(&self, a: u64, b: u64) -> Result<Detector, StreamError> {
        let values = self.history_rows(a, b);
        let n = (b - a) as usize;
        let series = Series::new(values, n, self.s.columns.clone(), None, None, n)
            .map_err(|e| StreamError::Config(format!("training rows: {e}")))?;
        let mut opts = self.fit_options();
        if opts.window > n / 2 {
            opts.window = (n / 2).max(1);
        }
        Ok(Detector::fit(&series, &opts, &mut |_| {})?)
    }

    /// Replaces the base model (warm-up training or full retrain).
    fn install_base(&mut self, det: Detector, t: u64) -> Result<(), StreamError> {
        let online = det.meta.online.clone().ok_or_else(|| StreamError::Config("no online calibration".into()))?;
        self.s.version += 1;
        let p = Pattern { id: self.s.version, adaptation: None, online, fitted_rows: None };
        self.s.base_sha256 = model_fingerprint(&det)?;
        self.s.smoother = TrailingMean::new(det.causal_smooth(), self.m());
        self.s.current = Some(p);
        self.s.previous = None;
        self.s.rollback_point = None;
        self.s.memory = Vec::new();
        self.s.validation = None;
        self.s.cusum = Cusum { s: 0.0, start: t + 1 };
        self.s.change_start = None;
        self.base = Some(Arc::new(det));
        self.own_base = true;
        Ok(())
    }

    fn train_from_warmup(&mut self) -> Result<(), StreamError> {
        let timer = Instant::now();
        let n = self.s.rows_seen;
        let det = self.train_on(self.s.history_start, n)?;
        // Score the warm-up rows with the model trained on them (one segment from row 0).
        let mut scaled = self.history_rows(self.s.history_start, n);
        det.meta.scaler.transform(&mut scaled);
        let cs = {
            let mut tm = TrailingMean::new(det.causal_smooth(), self.m());
            let cs = det.score_causal_scaled_with(&scaled, (n - self.s.history_start) as usize, &mut tm)?;
            self.install_base(det, n - 1)?;
            // The smoother continues from the warm-up rows, as if they had been pushed.
            self.s.smoother = tm;
            cs
        };
        let cur = self.s.current.clone().expect("installed");
        let thr = self.alarm_threshold(&cur);
        for (i, &score) in cs.score.iter().enumerate() {
            self.warmup_scores.push(Scored {
                row: self.s.history_start + i as u64,
                score,
                threshold: thr,
                is_anomaly: score > thr,
                p_anomaly: cur.online.score.p_anomaly(score),
                state: State::Warmup,
                model_version: self.s.version,
                top_dims: cs.top_dims(i, 3),
            });
        }
        self.s.state = State::Normal;
        let e = self.event(n - 1, "train", format!("trained on the {n} warm-up rows"));
        e.rows = Some([0, n - 1]);
        e.elapsed_ms = timer.elapsed().as_secs_f64() * 1e3;
        Ok(())
    }

    fn retrain(&mut self, t: u64) -> Result<bool, StreamError> {
        let timer = Instant::now();
        let n = match self.s.config.retrain {
            RetrainPolicy::EveryRows(n) | RetrainPolicy::AfterPatternRows(n) => n as u64,
            RetrainPolicy::Off => return Ok(false),
        };
        let a = (t + 1).saturating_sub(n).max(self.s.history_start).max(self.s.seg_start);
        let det = self.train_on(a, t + 1)?;
        let seg = self.s.seg_start;
        self.install_base(det, t)?;
        self.s.retrained_seg = Some(seg);
        self.s.last_retrain = t + 1;
        self.s.seg_start = a;
        let e = self.event(t, "retrain", format!("full retrain on the newest {} rows", t + 1 - a));
        e.rows = Some([a, t]);
        e.elapsed_ms = timer.elapsed().as_secs_f64() * 1e3;
        Ok(true)
    }

    // ------------------------------------------------------------------------------
    // Snapshots

    /// The monitor's whole state as bytes: `LARAMON1`, the JSON state's length (u64 LE), the
    /// JSON state, then the base model file when the monitor trained it itself (a shared
    /// base model is not included: [`Monitor::restore`] takes it).
    pub fn snapshot(&self) -> Result<Vec<u8>, StreamError> {
        let json = serde_json::to_vec(&self.s).map_err(|e| StreamError::Snapshot(e.to_string()))?;
        let mut out = Vec::with_capacity(16 + json.len());
        out.extend_from_slice(SNAPSHOT_MAGIC);
        out.extend_from_slice(&(json.len() as u64).to_le_bytes());
        out.extend_from_slice(&json);
        if self.own_base {
            if let Some(b) = &self.base {
                out.extend_from_slice(&b.to_bytes()?);
            }
        }
        Ok(out)
    }

    /// Restores a snapshot; `shared_base` is required when the snapshot does not carry its
    /// base model, and must be the same model (checked by SHA-256).
    pub fn restore(bytes: &[u8], shared_base: Option<Arc<Detector>>) -> Result<Monitor, StreamError> {
        let with_fp = match shared_base {
            Some(b) => {
                let fp = model_fingerprint(&b)?;
                Some((b, fp))
            }
            None => None,
        };
        Monitor::restore_shared(bytes, with_fp)
    }

    /// [`Monitor::restore`] with the shared base model's [`model_fingerprint`] computed once
    /// by the caller (a service restoring thousands of entities on one base model).
    pub fn restore_shared(bytes: &[u8], shared_base: Option<(Arc<Detector>, String)>) -> Result<Monitor, StreamError> {
        let bad = |d: &str| StreamError::Snapshot(d.to_string());
        if bytes.len() < 16 || &bytes[..8] != SNAPSHOT_MAGIC {
            return Err(bad("not a lara monitor snapshot (bad magic bytes)"));
        }
        let len = u64::from_le_bytes(bytes[8..16].try_into().expect("8 bytes")) as usize;
        let json = bytes.get(16..16usize.saturating_add(len)).ok_or_else(|| bad("truncated state"))?;
        let s: MonitorState = serde_json::from_slice(json).map_err(|e| bad(&format!("state: {e}")))?;
        let rest = &bytes[16 + len..];
        let (base, own) = if !rest.is_empty() {
            let det = Detector::from_bytes(std::path::Path::new("<snapshot>"), rest)?;
            (Some(Arc::new(det)), true)
        } else if s.base_sha256.is_empty() {
            (None, true)
        } else {
            let (b, fp) = shared_base.ok_or_else(|| bad("the snapshot needs its shared base model"))?;
            if fp != s.base_sha256 {
                return Err(bad("the given base model is not the one the snapshot was taken with"));
            }
            (Some(b), false)
        };
        if let (Some(b), true) = (&base, own) {
            if model_fingerprint(b)? != s.base_sha256 {
                return Err(bad("the embedded model does not match the state"));
            }
        }
        s.config.validate().map_err(StreamError::Config)?;
        Ok(Monitor { base, own_base: own, s, events: Vec::new(), warmup_scores: Vec::new() })
    }
}
