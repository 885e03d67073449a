//! `lara train` and `lara detect`: the window-level VAE detector (crate `lara-vae`).
//!
//! Wiring (done by the lead in main.rs): `mod vae_cmds;`, two `Command` variants
//! `Train(vae_cmds::TrainArgs)` / `Detect(vae_cmds::DetectArgs)` calling
//! [`train`] / [`detect`]; lara-cli depends on `lara-vae`.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lara_core::{read_csv, ScalerKind, Series};
use lara_vae::{Activation, Detection, Detector, FitOptions, Progress, ScoreKind, TrainConfig};

use crate::data_args::DataArgs;

/// Train a VAE detector on the training prefix of a data file and save it as one `.lara` file.
#[derive(Args, Debug, Clone)]
pub struct TrainArgs {
    /// Data CSV (TSB-AD convention or any CSV; see the reader flags).
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Where to write the model (single file; written atomically).
    #[arg(long, value_name = "M.lara")]
    pub model: PathBuf,
    #[command(flatten)]
    pub read: DataArgs,
    /// Window length w (time steps per VAE input).
    #[arg(long, default_value_t = FitOptions::default().window)]
    pub window: usize,
    /// Maximum number of epochs (early stopping on a validation tail usually stops sooner).
    #[arg(long, default_value_t = TrainConfig::default().epochs)]
    pub epochs: usize,
    /// Cap on the total number of Adam steps (0 = none).
    #[arg(long, default_value_t = TrainConfig::default().max_steps)]
    pub max_steps: usize,
    /// Random seed: same seed, data and flags give bit-identical models.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Latent dimension.
    #[arg(long, default_value_t = TrainConfig::default().latent)]
    pub latent: usize,
    /// Hidden layer width.
    #[arg(long, default_value_t = TrainConfig::default().hidden)]
    pub hidden: usize,
    /// Hidden layers in the encoder and in the decoder.
    #[arg(long, default_value_t = TrainConfig::default().depth)]
    pub depth: usize,
    /// Hidden activation: relu or tanh.
    #[arg(long, default_value = "relu", value_parser = parse_activation)]
    pub activation: Activation,
    /// Adam learning rate.
    #[arg(long, default_value_t = TrainConfig::default().lr)]
    pub lr: f32,
    /// Mini-batch size (windows).
    #[arg(long, default_value_t = TrainConfig::default().batch)]
    pub batch: usize,
    /// Final KL weight of the ELBO (warmed up over the first epochs).
    #[arg(long, default_value_t = TrainConfig::default().beta)]
    pub beta: f32,
    /// Early-stopping patience in epochs.
    #[arg(long, default_value_t = TrainConfig::default().patience)]
    pub patience: usize,
    /// Fraction of the training windows (the latest) used for validation.
    #[arg(long, default_value_t = TrainConfig::default().val_frac)]
    pub val_frac: f32,
    /// Default scoring stride stored in the model (0 = window/2).
    #[arg(long, default_value_t = 0)]
    pub stride: usize,
    /// Row score: nll (Gaussian negative log-likelihood, calibrated per-feature variance) or
    /// sse (squared reconstruction error).
    #[arg(long, default_value = "nll")]
    pub score: ScoreKind,
    /// Moving-average length of the row scores (default: the window length; 0 = none).
    #[arg(long)]
    pub smooth: Option<usize>,
    /// Trailing-mean length of the causal (online) scores (default: a quarter window).
    #[arg(long)]
    pub causal_smooth: Option<usize>,
    /// Knee of the per-feature contributions of causal scores in nats (0 = linear): above
    /// it a contribution grows logarithmically, so one rarely flipping channel cannot drown
    /// the others.
    #[arg(long, default_value_t = lara_vae::detector::DEFAULT_CONTRIB_KNEE)]
    pub contrib_knee: f32,
    /// Newest steps of each causal window whose NLL makes a row's raw online score
    /// (default 1: the row itself).
    #[arg(long)]
    pub causal_steps: Option<usize>,
    /// Knee of the per-element contributions of the offline (look-ahead) scores in nats
    /// (0 = linear); as --contrib-knee for the causal scores.
    #[arg(long, default_value_t = FitOptions::default().score_knee.unwrap_or(0.0))]
    pub score_knee: f32,
    /// Per-channel normalisation of the offline scores (0 = off): each channel's contribution
    /// is divided by this quantile of its contributions on the training rows, so a channel is
    /// judged against its own training spread (a noisy command flag cannot outweigh a quiet
    /// telemetry channel that leaves its range).
    #[arg(long, default_value_t = FitOptions::default().channel_quantile.unwrap_or(0.0))]
    pub channel_quantile: f64,
    /// Floor (nats) of the per-channel divisor of --channel-quantile.
    #[arg(long, default_value_t = FitOptions::default().channel_floor)]
    pub channel_floor: f32,
    /// Second opinion beside the VAE on series with two or more columns: how rare each
    /// continuous channel's value is, from a histogram with this many bins over its training
    /// range (0 = off). Catches a channel sitting at an unusual level for long, which a VAE
    /// trained on every row learns to reconstruct. Binary and constant channels are left out.
    #[arg(long, default_value_t = FitOptions::default().marginal_bins.unwrap_or(0))]
    pub marginal_bins: usize,
    /// Weight of --marginal-bins' opinion: at 1 it counts as much as the VAE's score at their
    /// training 0.99-quantiles.
    #[arg(long, default_value_t = FitOptions::default().marginal_weight)]
    pub marginal_weight: f64,
    /// Absolute floor of the calibrated decoder variance, in scaled units (a z-scored channel
    /// has variance 1): a channel constant in training cannot make a flip cost more than
    /// ½ / floor nats per element.
    #[arg(long, default_value_t = TrainConfig::default().var_floor_abs)]
    pub var_floor_abs: f32,
    /// Margin α of the threshold over the training scores: at least max + α (max − median),
    /// so a pattern that recurs as it was in training is not alarmed (0 = POT only).
    #[arg(long, default_value_t = FitOptions::default().threshold_margin)]
    pub threshold_margin: f64,
    /// Scaler fitted on the training prefix: zscore, minmax or robust.
    #[arg(long, default_value = "zscore")]
    pub scaler: ScalerKind,
    /// POT risk level q for the label-free threshold (expected exceedance rate).
    #[arg(long, default_value_t = FitOptions::default().risk)]
    pub risk: f64,
    /// POT initial quantile of the training scores.
    #[arg(long, default_value_t = FitOptions::default().init_level)]
    pub init_level: f64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Score every row of a data file with a trained model; write one CSV row per input row.
#[derive(Args, Debug, Clone)]
pub struct DetectArgs {
    /// Model written by `lara train`.
    #[arg(long, value_name = "M.lara")]
    pub model: PathBuf,
    /// Data CSV with the model's columns.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Output CSV: row (or timestamp), score, threshold, is_anomaly, top_dims.
    #[arg(long, value_name = "SCORES.csv")]
    pub out: PathBuf,
    #[command(flatten)]
    pub read: DataArgs,
    /// Scoring stride (default: the model's, window/2). `window` is the fastest.
    #[arg(long)]
    pub stride: Option<usize>,
    /// Causal scores, as the online monitor publishes them (`lara replay --policy static`):
    /// row t uses only rows ≤ t (the window ending at t, a trailing mean), with the model's
    /// online calibration as threshold. The default keeps TSB-AD's look-ahead protocol
    /// (windows around each row, centred smoothing) for benchmark parity.
    #[arg(long)]
    pub causal: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also draw the data, the score, the threshold, alarms and labels (when the file has
    /// them) to this PNG.
    #[arg(long, value_name = "FILE.png")]
    pub plot: Option<PathBuf>,
}

fn parse_activation(s: &str) -> Result<Activation, String> {
    match s.to_ascii_lowercase().as_str() {
        "relu" => Ok(Activation::Relu),
        "tanh" => Ok(Activation::Tanh),
        _ => Err(format!("unknown activation {s:?} (expected relu or tanh)")),
    }
}

fn set_threads(n: Option<usize>) -> Result<()> {
    if let Some(n) = n {
        if n == 0 {
            bail!("--threads must be at least 1");
        }
        lara_vae::init_threads(n)?;
    }
    Ok(())
}

fn read(path: &Path, read: &DataArgs) -> Result<Series> {
    read_csv(path, &read.csv_options()).with_context(|| format!("reading {}", path.display()))
}

/// A progress bar for [`Detector::fit`] and the callback that drives it (steps, loss,
/// validation loss; epochs are also logged at info level).
pub fn training_progress() -> (ProgressBar, impl FnMut(Progress)) {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let handle = bar.clone();
    let mut last_val: Option<f64> = None;
    let cb = move |p: Progress| match p {
        Progress::Start { epochs, steps_per_epoch, max_steps } => {
            let total = (epochs * steps_per_epoch) as u64;
            handle.set_length(if max_steps > 0 { total.min(max_steps as u64) } else { total });
        }
        Progress::Step { epoch, loss, .. } => {
            handle.inc(1);
            let v = last_val.map(|v| format!("  val {v:.3}")).unwrap_or_default();
            handle.set_message(format!("epoch {}  loss {loss:.3}{v}", epoch + 1));
        }
        Progress::Epoch(e) => {
            last_val = e.val_loss;
            tracing::info!(epoch = e.epoch + 1, train_loss = e.train_loss, val_loss = ?e.val_loss, "epoch done");
        }
    };
    (bar, cb)
}

/// `lara train`.
pub fn train(args: &TrainArgs) -> Result<()> {
    set_threads(args.threads)?;
    let t0 = Instant::now();
    let series = read(&args.data, &args.read)?;
    let train_end = if series.train_end == 0 { series.n_rows } else { series.train_end };
    let opts = FitOptions {
        window: args.window,
        scaler: args.scaler,
        train: TrainConfig {
            hidden: args.hidden,
            depth: args.depth,
            latent: args.latent,
            activation: args.activation,
            epochs: args.epochs,
            batch: args.batch,
            lr: args.lr,
            beta: args.beta,
            patience: args.patience,
            val_frac: args.val_frac,
            max_steps: args.max_steps,
            var_floor_abs: args.var_floor_abs,
            seed: args.seed,
            ..TrainConfig::default()
        },
        score_kind: args.score,
        score_stride: args.stride,
        smooth: args.smooth,
        risk: args.risk,
        init_level: args.init_level,
        causal_smooth: args.causal_smooth,
        contrib_knee: if args.contrib_knee > 0.0 { Some(args.contrib_knee) } else { None },
        causal_steps: args.causal_steps,
        score_knee: (args.score_knee > 0.0).then_some(args.score_knee),
        threshold_margin: args.threshold_margin,
        channel_quantile: (args.channel_quantile > 0.0).then_some(args.channel_quantile),
        channel_floor: args.channel_floor,
        marginal_bins: (args.marginal_bins > 0).then_some(args.marginal_bins),
        marginal_weight: args.marginal_weight,
    };
    eprintln!(
        "training on rows [0, {train_end}) of {} ({} rows × {} columns), window {}, {} threads",
        args.data.display(),
        series.n_rows,
        series.n_cols(),
        args.window,
        lara_vae::threads()
    );
    let (bar, mut cb) = training_progress();
    let det = Detector::fit(&series, &opts, &mut cb).context("training failed")?;
    bar.finish_and_clear();
    det.save(&args.model).with_context(|| format!("writing {}", args.model.display()))?;
    let r = &det.meta.report;
    let size = std::fs::metadata(&args.model).map(|m| m.len()).unwrap_or(0);
    println!(
        "trained in {:.2} s: {} epochs ({} steps{}), best epoch {}, validation loss {}",
        t0.elapsed().as_secs_f64(),
        r.epochs_run,
        r.steps,
        if r.stopped_early { ", early stop" } else { "" },
        r.best_epoch + 1,
        r.best_val_loss.map(|v| format!("{v:.4}")).unwrap_or_else(|| "n/a (too few windows)".into())
    );
    println!(
        "threshold {:.4} ({} on {} training scores, risk {})",
        det.meta.threshold.value, det.meta.threshold.method, det.meta.threshold.n_scores, det.meta.threshold.risk
    );
    if let Some(m) = &det.meta.marginal {
        let names: Vec<&str> = m.channels.iter().map(|h| det.meta.columns[h.column].as_str()).collect();
        println!(
            "value histograms ({} bins) beside the VAE on {} of {} columns: {}",
            m.channels.first().map_or(0, |h| h.bin_score.len()),
            names.len(),
            det.meta.columns.len(),
            names.join(", ")
        );
    }
    println!("model written to {} ({:.1} KiB)", args.model.display(), size as f64 / 1024.0);
    Ok(())
}

pub fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// `lara detect`.
pub fn detect(args: &DetectArgs) -> Result<()> {
    set_threads(args.threads)?;
    let t0 = Instant::now();
    let det = Detector::load(&args.model)?;
    let mut ro = args.read.csv_options();
    if ro.columns.is_none() {
        // Read exactly the model's columns (extra columns in the file are ignored).
        ro.columns = Some(det.meta.columns.clone());
    }
    let series = read_csv(&args.data, &ro).with_context(|| {
        format!(
            "reading {} with the model's {} columns ({})",
            args.data.display(),
            det.meta.columns.len(),
            det.meta.columns.join(", ")
        )
    })?;
    if let Some(s) = args.stride {
        if s == 0 {
            bail!("--stride must be at least 1");
        }
    }
    let t1 = Instant::now();
    let r = if args.causal { det.detect_causal(&series)? } else { det.detect(&series, args.stride)? };
    let score_s = t1.elapsed().as_secs_f64();

    write_detection_csv(&args.out, &series, &r)?;
    let n_anom = r.is_anomaly.iter().filter(|&&a| a).count();
    println!(
        "scored {} rows in {:.3} s ({:.0} rows/s); {} above threshold {:.4} ({:.2} %); written to {}",
        series.n_rows,
        score_s,
        series.n_rows as f64 / score_s.max(1e-9),
        n_anom,
        r.threshold,
        100.0 * n_anom as f64 / series.n_rows.max(1) as f64,
        args.out.display()
    );
    if let Some(p) = &args.plot {
        write_detect_plot(p, args, &series, &r)?;
        println!("plot written to {}", p.display());
    }
    if let Some(labels) = &series.labels {
        if labels.contains(&1) && series.n_rows > 0 {
            let first: Vec<f64> = (0..series.n_rows).map(|t| series.values[t * series.n_cols()] as f64).collect();
            let w = lara_core::find_length_rank(&first);
            match lara_metrics::evaluate(labels, &r.score, w) {
                Ok(m) => {
                    let f = |v: Option<f64>| v.map(|v| format!("{v:.3}")).unwrap_or_else(|| "n/a".into());
                    println!(
                        "labels present (metric window {w}): VUS-PR {}  AUC-PR {}  VUS-ROC {}  PA-F1 {}  Affiliation-F {}",
                        f(m.vus_pr),
                        f(m.auc_pr),
                        f(m.vus_roc),
                        f(m.pa_f1),
                        f(m.affiliation_f)
                    );
                }
                Err(e) => tracing::warn!("metrics not computed: {e}"),
            }
        }
    }
    tracing::info!(seconds = t0.elapsed().as_secs_f64(), "detect done");
    Ok(())
}

/// `lara detect --plot`: the data (the columns most often among the alarms' top
/// contributors), the score, the threshold, alarms, labels and the training prefix.
fn write_detect_plot(path: &Path, args: &DetectArgs, series: &Series, r: &Detection) -> Result<()> {
    let show = crate::plot::pick_columns(
        series.n_cols(),
        r.top_dims.iter().zip(&r.is_anomaly).filter(|(_, &a)| a).map(|(d, _)| d.as_slice()),
    );
    let mut plot = crate::plot::DetectionPlot::new(series, &show, &r.score, &r.is_anomaly);
    let name = |p: &Path| p.file_name().map_or_else(|| p.display().to_string(), |f| f.to_string_lossy().into_owned());
    plot.title = format!("lara detect: {}", name(&args.data));
    let n_alarms = r.is_anomaly.iter().filter(|&&a| a).count();
    plot.subtitle = format!(
        "model {}; {} scores; threshold {:.4}: {n_alarms} alarms in {} rows",
        name(&args.model),
        if args.causal { "causal (online)" } else { "look-ahead (TSB-AD protocol)" },
        r.threshold,
        series.n_rows
    );
    plot.threshold = Some(r.threshold);
    crate::plot::write_detection_plot(path, &plot)
}

/// Writes one CSV row per input row: `row` (or `timestamp`), `score`, `threshold`,
/// `is_anomaly`, `top_dims` (the top-3 column names joined by `;`), atomically.
pub fn write_detection_csv(path: &Path, series: &Series, r: &Detection) -> Result<()> {
    let mut out = String::with_capacity(series.n_rows * 48);
    let key = if series.timestamps.is_some() { "timestamp" } else { "row" };
    out.push_str(&format!("{key},score,threshold,is_anomaly,top_dims\n"));
    let thr = format!("{}", r.threshold);
    for t in 0..series.n_rows {
        let k = match &series.timestamps {
            Some(ts) => csv_field(&ts[t]),
            None => t.to_string(),
        };
        let dims: Vec<&str> = r.top_dims[t].iter().map(|&j| series.columns[j].as_str()).collect();
        out.push_str(&format!(
            "{k},{},{thr},{},{}\n",
            r.score[t],
            u8::from(r.is_anomaly[t]),
            csv_field(&dims.join(";"))
        ));
    }
    lara_core::write_atomic(path, out.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}
