//! `lara replay`: a data file pushed row by row through the online monitor (crate
//! `lara-stream`), exactly as the service will see it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use lara_core::{read_csv, Series};
use lara_stream::{Event, Monitor, MonitorConfig, Policy, RetrainPolicy, Scored};
use lara_vae::{Detector, FitOptions, TrainConfig};

use crate::data_args::DataArgs;

/// Replay a data file through the online monitor: causal scores, automatic pattern-change
/// handling with LARA, one output row per input row.
///
/// Examples:
///   lara replay --data series.csv --model m.lara --out scores.csv --events events.jsonl
///   lara replay --data 001_SMAP_id_1_Sensor_tr_2880_1st_7570.csv --out scores.csv
///   lara replay --data series.csv --train-end 2000 --policy static --out scores.csv
///
/// With --model every row from the first is pushed to a monitor that starts with that model.
/// Without it, the first N rows (--train-end, or the TSB-AD file name) are the warm-up: the
/// monitor trains on them and scores them with that model, then the rest is pushed.
#[derive(Args, Debug, Clone)]
#[command(verbatim_doc_comment)]
pub struct ReplayArgs {
    /// Data CSV (TSB-AD convention or any CSV; see the reader flags).
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Start from this model (written by `lara train` or `lara adapt`).
    #[arg(long, value_name = "M.lara")]
    pub model: Option<PathBuf>,
    /// Output CSV: row (or timestamp), score, threshold, is_anomaly, p_anomaly, state,
    /// model_version, top_dims.
    #[arg(long, value_name = "SCORES.csv")]
    pub out: PathBuf,
    /// Write the monitor's decisions (suspect, adapt, validate, roll back, re-select,
    /// retrain) with their evidence as JSON lines.
    #[arg(long, value_name = "EVENTS.jsonl")]
    pub events: Option<PathBuf>,
    /// static (never adapt), adapt (LARA on persistent changes), adapt+retrain (also a full
    /// retrain once a new pattern has --retrain-rows rows).
    #[arg(long, default_value = "adapt")]
    pub policy: Policy,
    /// K: rows of a new pattern LARA adapts from.
    #[arg(long, default_value_t = 40)]
    pub slots: usize,
    /// Rows a deviation must last before it may become the new normal (at least --slots;
    /// default: the model's window + --slots).
    #[arg(long)]
    pub persist: Option<usize>,
    /// Rows of a new pattern before the full retrain of adapt+retrain.
    #[arg(long, default_value_t = 1000)]
    pub retrain_rows: usize,
    /// Also draw the data, the score, the threshold, alarms, labels and the monitor's
    /// adaptations to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
    /// Alarm when a row is rarer than this among normal rows: is_anomaly ⇔ p_anomaly >
    /// 1 − RISK (default: the model's POT risk, 1e-3).
    #[arg(long)]
    pub risk: Option<f64>,
    /// Rows per push (1 = row by row; results are identical for any value).
    #[arg(long, default_value_t = 1)]
    pub batch: usize,
    /// Start a model given by --model by LARA from the first --slots rows (cold start on a
    /// shared base model).
    #[arg(long)]
    pub cold_start: bool,
    /// Window of the model trained in the warm-up (no --model).
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Seed of the warm-up training.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[command(flatten)]
    pub read: DataArgs,
}

/// What a replay produced.
pub struct Replay {
    pub results: Vec<Scored>,
    pub events: Vec<Event>,
    /// Seconds spent pushing rows (warm-up training included).
    pub seconds: f64,
    pub monitor: Monitor,
}

/// Builds the monitor settings of a replay.
pub fn monitor_config(policy: Policy, slots: usize, persist: Option<usize>, retrain_rows: usize) -> MonitorConfig {
    MonitorConfig {
        policy,
        slots,
        persist: persist.map(|p| p.max(slots)),
        retrain: RetrainPolicy::AfterPatternRows(retrain_rows),
        ..MonitorConfig::default()
    }
}

/// Pushes every row of `series` through a monitor: from `model`, or after a warm-up of
/// `series.train_end` rows trained with `fit`.
pub fn replay(
    series: &Series,
    model: Option<Arc<Detector>>,
    mut cfg: MonitorConfig,
    fit: FitOptions,
    batch: usize,
) -> Result<Replay> {
    let m = series.n_cols();
    let mut monitor = match model {
        Some(det) => Monitor::new(det, cfg)?,
        None => {
            let n = series.train_end;
            if n == 0 || n >= series.n_rows {
                bail!(
                    "no model and no warm-up: give --model, or --train-end N with N below the {} rows",
                    series.n_rows
                );
            }
            cfg.warmup_rows = n;
            cfg.fit = Some(fit);
            Monitor::untrained(series.columns.clone(), cfg)?
        }
    };
    let t0 = Instant::now();
    let mut results: Vec<Scored> = Vec::with_capacity(series.n_rows);
    let mut events = Vec::new();
    let rows: Vec<&[f32]> = (0..series.n_rows).map(|t| &series.values[t * m..(t + 1) * m]).collect();
    for (i, chunk) in rows.chunks(batch.max(1)).enumerate() {
        let r = monitor.push(chunk).with_context(|| format!("pushing rows from {}", i * batch.max(1) + 1))?;
        results.extend(r);
        let warm = monitor.take_warmup_scores();
        for s in warm {
            let t = s.row as usize;
            results[t] = s;
        }
        events.extend(monitor.drain_events());
    }
    Ok(Replay { results, events, seconds: t0.elapsed().as_secs_f64(), monitor })
}

/// `lara replay`.
pub fn run(args: &ReplayArgs) -> Result<()> {
    let model = match &args.model {
        Some(p) => Some(Arc::new(Detector::load(p).with_context(|| format!("loading {}", p.display()))?)),
        None => None,
    };
    let mut ro = args.read.csv_options();
    if let (Some(det), None) = (&model, &ro.columns) {
        ro.columns = Some(det.meta.columns.clone());
    }
    let series = read_csv(&args.data, &ro).with_context(|| format!("reading {}", args.data.display()))?;
    if args.slots == 0 {
        bail!("--slots must be at least 1");
    }
    let mut cfg = monitor_config(args.policy, args.slots, args.persist, args.retrain_rows);
    cfg.cold_start = args.cold_start;
    cfg.alarm_risk = args.risk;
    let fit = FitOptions {
        window: args.window,
        train: TrainConfig { seed: args.seed, ..TrainConfig::default() },
        ..FitOptions::default()
    };
    let r = replay(&series, model, cfg, fit, args.batch)?;
    write_scores_csv(&args.out, &series, &r.results)?;
    if let Some(p) = &args.events {
        write_events(p, &r.events)?;
    }
    if let Some(p) = &args.plot {
        let name =
            args.data.file_name().map_or_else(|| args.data.display().to_string(), |f| f.to_string_lossy().into_owned());
        write_replay_plot(p, &series, &r, &format!("lara replay: {name}"), &args.policy.to_string())?;
        println!("plot written to {}", p.display());
    }
    let alarms = r.results.iter().filter(|s| s.is_anomaly).count();
    let count = |k: &str| r.events.iter().filter(|e| e.kind == k).count();
    println!(
        "replayed {} rows in {:.2} s ({:.0} rows/s), policy {}: {} alarms ({:.2} %), {} adaptations, {} re-selections, {} roll-backs, {} retrains; final state {}, model version {}",
        series.n_rows,
        r.seconds,
        series.n_rows as f64 / r.seconds.max(1e-9),
        args.policy,
        alarms,
        100.0 * alarms as f64 / series.n_rows.max(1) as f64,
        count("adapt"),
        count("reselect"),
        count("rollback"),
        count("retrain"),
        r.monitor.state(),
        r.monitor.version()
    );
    if let Some(labels) = &series.labels {
        if labels.contains(&1) {
            let scores: Vec<f64> = r.results.iter().map(|s| if s.score.is_finite() { s.score } else { 0.0 }).collect();
            let first: Vec<f64> = (0..series.n_rows).map(|t| series.values[t * series.n_cols()] as f64).collect();
            let w = lara_core::find_length_rank(&first);
            if let Ok(mt) = lara_metrics::evaluate(labels, &scores, w) {
                let f = crate::report::fmt3;
                println!("labels present (metric window {w}): VUS-PR {}  AUC-PR {}", f(mt.vus_pr), f(mt.auc_pr));
            }
        }
    }
    println!("scores written to {}", args.out.display());
    Ok(())
}

/// Writes one CSV row per result.
pub fn write_scores_csv(path: &Path, series: &Series, results: &[Scored]) -> Result<()> {
    let mut out = String::with_capacity(results.len() * 64);
    let key = if series.timestamps.is_some() { "timestamp" } else { "row" };
    out.push_str(&format!("{key},score,threshold,is_anomaly,p_anomaly,state,model_version,top_dims\n"));
    for s in results {
        let t = s.row as usize;
        let k = match &series.timestamps {
            Some(ts) => crate::vae_cmds::csv_field(&ts[t]),
            None => t.to_string(),
        };
        let dims: Vec<&str> = s.top_dims.iter().map(|&j| series.columns[j].as_str()).collect();
        out.push_str(&format!(
            "{k},{},{},{},{},{},{},{}\n",
            s.score,
            s.threshold,
            u8::from(s.is_anomaly),
            s.p_anomaly,
            s.state,
            s.model_version,
            crate::vae_cmds::csv_field(&dims.join(";"))
        ));
    }
    lara_core::write_atomic(path, out.as_bytes()).with_context(|| format!("writing {}", path.display()))
}

/// The replay's plot (`title` on top, `policy` named in the subtitle): the data (the
/// columns most often among the alarms' top contributors), the score, the per-row
/// threshold, alarms, labels and the monitor's decisions (adaptations, re-selections,
/// roll-backs, retrains).
pub fn write_replay_plot(path: &Path, series: &Series, r: &Replay, title: &str, policy: &str) -> Result<()> {
    let scores: Vec<f64> = r.results.iter().map(|s| s.score).collect();
    let thresholds: Vec<f64> = r.results.iter().map(|s| s.threshold).collect();
    let alarms: Vec<bool> = r.results.iter().map(|s| s.is_anomaly).collect();
    let markers: Vec<crate::plot::Marker> = r
        .events
        .iter()
        .filter(|e| matches!(e.kind.as_str(), "adapt" | "reselect" | "rollback" | "retrain"))
        .map(|e| crate::plot::Marker { row: e.row as usize, kind: e.kind.clone() })
        .collect();
    let show = crate::plot::pick_columns(
        series.n_cols(),
        r.results.iter().filter(|s| s.is_anomaly).map(|s| s.top_dims.as_slice()),
    );
    let mut plot = crate::plot::DetectionPlot::new(series, &show, &scores, &alarms);
    plot.title = title.to_string();
    let n_alarms = alarms.iter().filter(|&&a| a).count();
    let warmup =
        if series.train_end > 0 { format!("training prefix {} rows; ", series.train_end) } else { String::new() };
    let decisions = match markers.len() {
        1 => "1 monitor decision".to_string(),
        k => format!("{k} monitor decisions"),
    };
    plot.subtitle =
        format!("online monitor, policy {policy}: causal scores, row by row; {warmup}{decisions}; {n_alarms} alarms");
    plot.thresholds = Some(&thresholds);
    plot.markers = &markers;
    crate::plot::write_detection_plot(path, &plot)
}

/// Writes the events as JSON lines.
pub fn write_events(path: &Path, events: &[Event]) -> Result<()> {
    let mut buf = Vec::new();
    for e in events {
        serde_json::to_writer(&mut buf, e)?;
        buf.write_all(b"\n")?;
    }
    lara_core::write_atomic(path, &buf).with_context(|| format!("writing {}", path.display()))
}
