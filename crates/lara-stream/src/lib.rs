//! # lara-stream — the per-entity online monitor
//!
//! [`Monitor::push`] scores rows as they arrive and keeps the detector in step with the
//! entity's normal pattern, label-free. The CLI's `lara replay` drives it over a file; the
//! service and the broker workers wrap the same code. It is synchronous and deterministic: no
//! threads, no clocks in its decisions (only in the `elapsed_ms` of events).
//!
//! ## Causal scores
//! The result for row `t` depends only on rows `≤ t` (`lara_vae::causal`): the window of the
//! `w` rows ending at `t`, cut at the start of the current pattern's segment and left-padded
//! with its first row; the raw score is the NLL of row `t` under that window's
//! reconstruction; the published `score` is the trailing mean of the raw scores over
//! `smooth` rows since the last model switch (default a quarter window). Pushing rows one by
//! one or in batches of any size gives bit-identical results (tested): every row's window is
//! scored by the same GEMM code, whose rows do not depend on the batch size, and the trailing
//! mean is fed in the same order.
//!
//! ## `p_anomaly` (calibration)
//! Every model carries tail models of its causal scores on its own training rows
//! (`lara_metrics::threshold::TailModel`: empirical CDF below the POT initial threshold, the
//! fitted Generalised Pareto tail above it). `p_anomaly = F(score)`, the probability that a
//! *normal* row of this entity scores at most `score`; `threshold = F⁻¹(1 − risk)` (risk
//! `1e-3` by default), so `is_anomaly` ⇔ `p_anomaly > 0.999`, and one alert rule such as
//! `p_anomaly ≥ 0.99` means "rarer than 1 % of normal rows" for every entity and model.
//! After a LARA adaptation the model's decoder variance is re-estimated, which moves the NLL
//! of normal rows by the change of its constant `½ Σ_k log 2πσ²_k`; the calibration is moved
//! by the same amount (there are only `K` rows of the new pattern, too few to refit a tail).
//! A re-selected pattern brings its own calibration; a retrained model is calibrated on its
//! training rows. During a warm-up without a model there is no score (NaN) and no alarm.
//!
//! ## Life cycle
//! `warmup` → `normal` → `suspect` → `collecting` → `adapted` → (`validate` → `normal`, or
//! `rollback` → `normal` with the old model).
//! * **Change test: CUSUM** on exceedance indicators of the raw score
//!   ([`ChangeTest`]): `e_t = 1[F_raw(r_t) > 0.99]`, `S_t = max(0, S_{t−1} + e_t − ½)`.
//!   Why CUSUM on indicators rather than BOCPD on the scores: the raw NLL is heavy-tailed
//!   and its scale changes with every adaptation; indicators through the calibrated tail
//!   model are scale-free, O(1) per row, and give the change start for free (after the last
//!   row where `S = 0`). A single spike adds at most a few rows of `e_t = 1` and never
//!   reaches the suspect level (5: about ten exceeding rows in a row).
//! * **Incidents are not absorbed.** A deviation becomes the new normal only if it persists
//!   ([`MonitorConfig::persist`] rows from its estimated start, at least `slots`) with `S`
//!   never back at 0; an excursion that ends before is *dismissed* and stays a run of
//!   alarms. The rows of the change itself were already published with the old model's
//!   scores, so the transition keeps its alarms (results are never revised).
//! * **Adoption.** On the newest `slots` windows (the `slots + w − 1` newest rows, which all
//!   lie after the change once it persisted `w + slots` rows): a stored pattern (the base
//!   model and the last [`MonitorConfig::memory`] validated adapters) under which at most
//!   [`MonitorConfig::reselect_max_exceed`] of them exceed is *re-selected* (lowest mean NLL
//!   first); else LARA adapts the current model on them (`Detector::adapt_scaled`; at a cold
//!   start, fewer rows than a window are left-padded). The new model's segment starts at the
//!   first of those rows, so its windows never reach back into the old pattern.
//! * **Validation.** The next [`MonitorConfig::validate_rows`] rows are scored by both the
//!   new and the replaced model: the switch is kept when the new model's mean raw NLL is
//!   lower and at most [`MonitorConfig::validate_max_exceed`] of the rows exceed; otherwise
//!   it is rolled back and no new suspicion starts for [`MonitorConfig::cooldown`] rows.
//! * **Retrain** (policy `adapt+retrain`): once a validated new pattern has `N` rows
//!   ([`RetrainPolicy`]), a full retrain on them replaces the base model. It runs inline
//!   between two rows: scoring has no gap, and the replay stays deterministic.
//!
//! Every decision is an [`Event`] with its evidence (statistic, rows used, NLL before/after,
//! time taken). [`Monitor::snapshot`] / [`Monitor::restore`] carry the whole state (a shared
//! base model by reference and SHA-256 check); a restored monitor continues bit-identically.

//! ## Defaults and the evidence (experiment log, Dec 2026)
//!
//! Chosen on **half A** of `../shared/data/tsbad/` (the files with an odd number: 51 with an
//! anomaly — SMAP 21, MSL 10, NAB 20, UCR 1) with `lara bench online --half a --methods
//! static,adapt …`; half B is the confirmation (BENCHMARKS.md). Mean VUS-PR per group,
//! `static / adapt`; "v1" rows adapted on the newest 40 rows left-padded, later rows on the
//! newest 40 full windows (the default now). UCR is one file: read it as noise.
//!
//! | variant | MSL | NAB | SMAP | UCR | note |
//! |---|---|---|---|---|---|
//! | trailing mean 25 = w/4, knee 8 (v1) | .247/.247 | .259/.289 | .249/.238 | .659 | |
//! | trailing mean 1 (v1) | .231/.231 | .187/.224 | .210/.187 | .371 | |
//! | trailing mean 10 (v1) | .257/.257 | .237/.268 | .233/.216 | .488 | |
//! | trailing mean 50 (v1) | .235/.238 | .273/.301 | .258/.252 | .744 | NAB median alarm rate 7.7 % / 6.1 % (w/4: 5.2 / 3.4) |
//! | no knee (linear contributions) (v1) | .188/.201 | .261/.293 | .213/.164 | .750 | the knee wins on MSL and SMAP |
//! | window 40 (v1) | .251/.269 | .244/.260 | .238/.236 | .916 | |
//! | window 40, hidden 128 (v1) | .258/.292 | .227/.245 | .253/.226 | .361 | 5× fewer FLOPs per row |
//! | **adoption on full windows = defaults** | .247/.247 | .259/.283 | .249/.258 | .659 | adapt now helps SMAP |
//! | newest 25 steps per window scored | .240/.250 | .257/.272 | .232/.221 | .921/.927 | |
//! | newest 100 steps (the whole window) | .240/.239 | .273/.278 | .241/.211 | .755/.798 | |
//! | trailing mean 100 | .234/.245 | .264/.283 | .235/.256 | .604 | NAB median alarm rate 9.4 % |
//! | persist 300 rows (not w + 40) | .247/.247 | .259/.266 | .249/.232 | .659 | longer waits absorb fewer changes *and* fewer incidents: worse |
//! | window 40, hidden 128 | .258/.295 | .227/.246 | .253/.204 | .361 | NAB median alarm rate 0.8 % (w100: 3.4 %) |
//! | window 40, hidden 128, persist 140 / 300 | .258/.283, .258/.265 | .227/.244, .227/.231 | .253/.215, .253/.213 | .361 | |
//! | alarm risk 3·10⁻³ / 10⁻² | VUS-PR unchanged (a threshold) | | | | event recall +0–0.15, median alarm rate up to 2× |
//!
//! So: window 100 / hidden 256 (`lara train`'s defaults) with the adapt policy is the most
//! accurate on the three large groups (mean .263 vs .248 for window 40 / hidden 128); the small
//! model is 5× cheaper and alarms less on NAB, and is the one that meets the speed targets
//! (BENCHMARKS.md). The knee (8 nats) and the trailing mean of a quarter window are kept;
//! one newest step per window is as good as more and the cheapest.

mod config;
mod error;
mod monitor;

pub use config::{ChangeTest, MonitorConfig, Policy, RetrainPolicy};
pub use error::StreamError;
pub use monitor::{model_fingerprint, Event, Monitor, MonitorState, Pattern, Scored, State};
