//! `lara bench online`: the online monitor on every benchmark file, per dataset group and
//! per half of the files (defaults are chosen on half A, confirmed on half B), beside the
//! TSB-AD peers in both protocols.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use lara_core::{read_csv, CsvOptions, Series};
use lara_stream::{Event, Monitor, Policy, Scored};
use lara_vae::{FitOptions, TrainConfig};
use serde::Serialize;

use crate::eval::{estimated_window, OutputFormat};
use crate::replay_cmds::monitor_config;
use crate::report::{fmt3, mean, median, table};

const BENCH_ONLINE_HELP: &str = "\
Per file: the first N rows (N from the file name) are the warm-up: the monitor trains on them
and scores them; the rest is pushed in batches (results are identical to row-by-row pushes).
Methods: `offline` (lara detect, looks ahead: windows around each row, centred smoothing; for
reference only), `static` (causal, the warm-up model never changes), `adapt`, `adapt+retrain`.
Metrics: VUS-PR and AUC-PR (TSB-AD, all rows, metric window = TSB-AD's period estimate).
At the label-free threshold, on the rows after the warm-up:
  ev-R   event recall: labelled anomaly segments with at least one alarm row inside;
  ev-P   event precision: alarm episodes (maximal runs of alarm rows) that overlap a
         labelled segment;
  alarm% alarms among unlabelled rows (mean over files; `med` = median);
  adapt  adaptations + re-selections per file; `false` those whose rows overlap a label.
Half A = files with an odd number (defaults were chosen there), half B = even (confirmation).
Peers: IForest / PCA of TSB-AD 1.5, `whole` = their own protocol (fit on the whole series,
../shared/peers/results/dev_all_*.jsonl), `prefix` = fit on the training prefix only
(bench/peers/prefix_*.jsonl, scripts/run_peer_prefix.py). Only files with an anomaly count.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_ONLINE_HELP)]
pub struct OnlineBenchArgs {
    /// Directory of TSB-AD CSV files.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/tsbad")]
    pub data_dir: PathBuf,
    /// Which files: all, a (odd file numbers) or b (even).
    #[arg(long, default_value = "all")]
    pub half: String,
    /// Only files whose name contains this (e.g. SMAP).
    #[arg(long)]
    pub filter: Option<String>,
    /// At most this many files (after --half and --filter).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Methods to run, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "offline,static,adapt,adapt+retrain")]
    pub methods: Vec<String>,
    /// K: slots LARA adapts from.
    #[arg(long, default_value_t = 40)]
    pub slots: usize,
    /// Rows a deviation must last before adoption (default: window + slots).
    #[arg(long)]
    pub persist: Option<usize>,
    /// Rows of a new pattern before the retrain of adapt+retrain.
    #[arg(long, default_value_t = 1000)]
    pub retrain_rows: usize,
    /// Window of the warm-up model.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Hidden width of the warm-up model.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
    /// Trailing-mean length of the causal scores (default: a quarter window).
    #[arg(long)]
    pub causal_smooth: Option<usize>,
    /// Newest steps of each causal window scored (default 1).
    #[arg(long)]
    pub causal_steps: Option<usize>,
    /// Knee of the per-feature contributions (0 = linear).
    #[arg(long, default_value_t = lara_vae::detector::DEFAULT_CONTRIB_KNEE)]
    pub contrib_knee: f32,
    /// Alarm risk (is_anomaly ⇔ p_anomaly > 1 − risk; default: the model's, 1e-3).
    #[arg(long)]
    pub risk: Option<f64>,
    /// Stride of LARA's adaptation windows (default: the monitor's).
    #[arg(long)]
    pub adapt_stride: Option<usize>,
    /// Rows per push.
    #[arg(long, default_value_t = 256)]
    pub batch: usize,
    /// Files processed at once (each single-threaded).
    #[arg(long, default_value_t = 2)]
    pub jobs: usize,
    /// Peer results in the prefix protocol (prefix_<method>.jsonl).
    #[arg(long, value_name = "DIR", default_value = "bench/peers")]
    pub peers_prefix: PathBuf,
    /// Peer results in their own protocol (dev_all_<method>.jsonl).
    #[arg(long, value_name = "DIR", default_value = "../shared/peers/results")]
    pub peers_whole: PathBuf,
    /// Also write one JSON line per file and method here.
    #[arg(long, value_name = "OUT.jsonl")]
    pub jsonl: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Only the speed measurements (no files).
    #[arg(long)]
    pub speed_only: bool,
    /// Skip the speed measurements.
    #[arg(long)]
    pub no_speed: bool,
    /// Columns of the speed measurements' synthetic entity.
    #[arg(long, default_value_t = 38)]
    pub speed_columns: usize,
}

#[derive(Serialize, Clone, Debug)]
struct FileResult {
    file: String,
    group: String,
    half: char,
    method: String,
    rows: usize,
    test_rows: usize,
    vus_pr: Option<f64>,
    auc_pr: Option<f64>,
    event_recall: Option<f64>,
    event_precision: Option<f64>,
    alarm_rate_unlabelled: Option<f64>,
    adaptations: usize,
    false_adaptations: usize,
    rollbacks: usize,
    retrains: usize,
    rows_per_s: f64,
    train_s: f64,
}

/// Runs `[a, b)` of `mask` on rows `from..` (`lara_metrics::runs`, end made exclusive).
fn runs_from(mask: impl Iterator<Item = bool>, from: usize) -> Vec<(usize, usize)> {
    lara_metrics::runs(mask.skip(from)).into_iter().map(|(a, b)| (a + from, b + from + 1)).collect()
}

/// Event-level recall and precision and the unlabelled alarm rate on rows `from..`.
fn alarm_quality(labels: &[u8], alarms: &[bool], from: usize) -> (Option<f64>, Option<f64>, Option<f64>) {
    let segs = runs_from(labels.iter().map(|&l| l == 1), from);
    let recall = (!segs.is_empty())
        .then(|| segs.iter().filter(|&&(a, b)| alarms[a..b].iter().any(|&x| x)).count() as f64 / segs.len() as f64);
    let episodes = runs_from(alarms.iter().copied(), from);
    let precision = (!episodes.is_empty())
        .then(|| episodes.iter().filter(|&&(a, b)| labels[a..b].contains(&1)).count() as f64 / episodes.len() as f64);
    let (mut fa, mut n0) = (0usize, 0usize);
    for t in from..labels.len() {
        if labels[t] == 0 {
            n0 += 1;
            fa += alarms[t] as usize;
        }
    }
    (recall, precision, (n0 > 0).then(|| fa as f64 / n0 as f64))
}

fn file_half(name: &str) -> char {
    let n: usize = name.split('_').next().and_then(|s| s.parse().ok()).unwrap_or(0);
    if n % 2 == 1 {
        'A'
    } else {
        'B'
    }
}

fn group_of(name: &str) -> String {
    name.split('_').nth(1).unwrap_or("?").to_string()
}

#[allow(clippy::too_many_arguments)]
fn result_row(
    series: &Series,
    method: &str,
    scores: &[f64],
    alarms: &[bool],
    events: &[Event],
    rows_per_s: f64,
    train_s: f64,
    window: usize,
    name: &str,
) -> FileResult {
    let labels = series.labels.clone().unwrap_or_else(|| vec![0; series.n_rows]);
    let from = series.train_end;
    let (vus_pr, auc_pr) = match lara_metrics::evaluate(&labels, scores, window) {
        Ok(m) => (m.vus_pr, m.auc_pr),
        Err(_) => (None, None),
    };
    let (event_recall, event_precision, alarm_rate_unlabelled) = alarm_quality(&labels, alarms, from);
    let adopted: Vec<&Event> = events.iter().filter(|e| e.kind == "adapt" || e.kind == "reselect").collect();
    let false_adaptations = adopted
        .iter()
        .filter(|e| e.rows.is_some_and(|[a, b]| labels[a as usize..=(b as usize).min(labels.len() - 1)].contains(&1)))
        .count();
    FileResult {
        file: name.to_string(),
        group: group_of(name),
        half: file_half(name),
        method: method.to_string(),
        rows: series.n_rows,
        test_rows: series.n_rows - from,
        vus_pr,
        auc_pr,
        event_recall,
        event_precision,
        alarm_rate_unlabelled,
        adaptations: adopted.len(),
        false_adaptations,
        rollbacks: events.iter().filter(|e| e.kind == "rollback").count(),
        retrains: events.iter().filter(|e| e.kind == "retrain").count(),
        rows_per_s,
        train_s,
    }
}

fn run_file(path: &Path, args: &OnlineBenchArgs) -> Result<Vec<FileResult>> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let series = read_csv(path, &CsvOptions::default()).with_context(|| format!("reading {}", path.display()))?;
    let window = estimated_window(&series);
    let m = series.n_cols();
    let n = series.train_end;
    if n == 0 || n >= series.n_rows {
        bail!("{name}: no training prefix in the file name");
    }
    let mut cfg = monitor_config(Policy::Static, args.slots, args.persist, args.retrain_rows);
    cfg.warmup_rows = n;
    cfg.alarm_risk = args.risk;
    if let Some(st) = args.adapt_stride {
        cfg.adapt.stride = st;
    }
    cfg.fit = Some(FitOptions {
        window: args.window,
        causal_smooth: args.causal_smooth,
        contrib_knee: (args.contrib_knee > 0.0).then_some(args.contrib_knee),
        causal_steps: args.causal_steps,
        train: TrainConfig { hidden: args.hidden, ..TrainConfig::default() },
        ..FitOptions::default()
    });
    let rows: Vec<&[f32]> = (0..series.n_rows).map(|t| &series.values[t * m..(t + 1) * m]).collect();
    // The warm-up once, shared by every method.
    let t0 = Instant::now();
    let mut warm = Monitor::untrained(series.columns.clone(), cfg)?;
    warm.push(&rows[..n])?;
    let train_s = t0.elapsed().as_secs_f64();
    let warm_scores = warm.take_warmup_scores();
    let warm_events = warm.drain_events();
    let mut out = Vec::new();
    for method in &args.methods {
        if method == "offline" {
            let det = warm.base().expect("trained").clone();
            let t = Instant::now();
            let d = det.detect(&series, None)?;
            let rps = (series.n_rows - n) as f64 / t.elapsed().as_secs_f64().max(1e-9);
            out.push(result_row(&series, method, &d.score, &d.is_anomaly, &[], rps, train_s, window, &name));
            continue;
        }
        let policy: Policy = method.parse().map_err(anyhow::Error::msg)?;
        let mut mon = warm.clone();
        mon.set_policy(policy);
        let mut results: Vec<Scored> = warm_scores.clone();
        let mut events = warm_events.clone();
        let t = Instant::now();
        for chunk in rows[n..].chunks(args.batch.max(1)) {
            results.extend(mon.push(chunk)?);
            events.extend(mon.drain_events());
        }
        let rps = (series.n_rows - n) as f64 / t.elapsed().as_secs_f64().max(1e-9);
        let scores: Vec<f64> = results.iter().map(|s| s.score).collect();
        let alarms: Vec<bool> = results.iter().map(|s| s.is_anomaly).collect();
        out.push(result_row(&series, method, &scores, &alarms, &events, rps, train_s, window, &name));
    }
    Ok(out)
}

/// A peer's (VUS-PR, AUC-PR) per file.
type PeerScores = BTreeMap<String, (f64, f64)>;

/// Peer VUS-PR / AUC-PR per file from JSON lines.
fn load_peer(path: &Path) -> PeerScores {
    let mut out = BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(path) else {
        return out;
    };
    for line in text.lines() {
        let Ok(v) = crate::bench_detect::parse_python_json(line) else { continue };
        if let (Some(f), Some(vp), Some(ap)) = (v["file"].as_str(), v["VUS-PR"].as_f64(), v["AUC-PR"].as_f64()) {
            out.insert(f.to_string(), (vp, ap));
        }
    }
    out
}

pub fn run(args: &OnlineBenchArgs) -> Result<()> {
    if args.speed_only {
        let _ = lara_vae::init_threads(1);
        let s = speed(args.speed_columns, args.window, args.hidden, args.adapt_stride)?;
        match args.format {
            OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&s)?),
            OutputFormat::Table => print_speed(&s),
        }
        return Ok(());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.data_dir)
        .with_context(|| format!("reading {}", args.data_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "csv"))
        .collect();
    files.sort();
    let half = args.half.to_ascii_uppercase();
    files.retain(|p| {
        let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
        (half == "ALL" || file_half(name).to_string() == half)
            && args.filter.as_ref().is_none_or(|f| name.contains(f.as_str()))
    });
    if let Some(l) = args.limit {
        files.truncate(l);
    }
    if files.is_empty() {
        bail!("no CSV file selected in {}", args.data_dir.display());
    }
    if args.jobs > 1 {
        // One GEMM thread per file; files run side by side.
        let _ = lara_vae::init_threads(1);
    }
    let bar = ProgressBar::new(files.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} files  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let next = AtomicUsize::new(0);
    let results: Mutex<Vec<FileResult>> = Mutex::new(Vec::new());
    let files = Arc::new(files);
    std::thread::scope(|s| {
        for _ in 0..args.jobs.max(1) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                let Some(p) = files.get(i) else { break };
                match run_file(p, args) {
                    Ok(r) => results.lock().expect("lock").extend(r),
                    Err(e) => bar.println(format!("{}: {e:#}", p.display())),
                }
                bar.set_message(p.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string());
                bar.inc(1);
            });
        }
    });
    bar.finish_and_clear();
    let mut results = results.into_inner().expect("lock");
    results.sort_by(|a, b| (&a.file, &a.method).cmp(&(&b.file, &b.method)));
    if let Some(p) = &args.jsonl {
        let mut s = String::new();
        for r in &results {
            s.push_str(&serde_json::to_string(r)?);
            s.push('\n');
        }
        lara_core::write_atomic(p, s.as_bytes()).with_context(|| format!("writing {}", p.display()))?;
    }
    let peers: Vec<(String, PeerScores)> = ["IForest", "PCA"]
        .iter()
        .flat_map(|m| {
            [
                (format!("{m} (whole)"), load_peer(&args.peers_whole.join(format!("dev_all_{m}.jsonl")))),
                (format!("{m} (prefix)"), load_peer(&args.peers_prefix.join(format!("prefix_{m}.jsonl")))),
            ]
        })
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if matches!(args.format, OutputFormat::Json) {
        println!("{}", serde_json::to_string_pretty(&results)?);
        return Ok(());
    }
    print_summary(&results, &peers, args);
    if !args.no_speed {
        let _ = lara_vae::init_threads(1);
        print_speed(&speed(args.speed_columns, args.window, args.hidden, args.adapt_stride)?);
    }
    Ok(())
}

fn print_summary(results: &[FileResult], peers: &[(String, PeerScores)], args: &OnlineBenchArgs) {
    let mut groups: Vec<String> = results.iter().map(|r| r.group.clone()).collect();
    groups.sort();
    groups.dedup();
    let mut rows = Vec::new();
    for half in ['A', 'B', '*'] {
        for g in &groups {
            let sel = |r: &&FileResult| &r.group == g && (half == '*' || r.half == half);
            // Files with an anomaly (metrics defined).
            let files: Vec<String> = {
                let mut f: Vec<String> =
                    results.iter().filter(sel).filter(|r| r.vus_pr.is_some()).map(|r| r.file.clone()).collect();
                f.sort();
                f.dedup();
                f
            };
            if files.is_empty() {
                continue;
            }
            let h = if half == '*' { "all".to_string() } else { half.to_string() };
            for method in &args.methods {
                let rs: Vec<&FileResult> =
                    results.iter().filter(sel).filter(|r| &r.method == method && r.vus_pr.is_some()).collect();
                if rs.is_empty() {
                    continue;
                }
                let rates: Vec<f64> = rs.iter().filter_map(|r| r.alarm_rate_unlabelled).collect();
                rows.push(vec![
                    h.clone(),
                    g.clone(),
                    method.clone(),
                    rs.len().to_string(),
                    fmt3(mean(rs.iter().filter_map(|r| r.vus_pr))),
                    fmt3(mean(rs.iter().filter_map(|r| r.auc_pr))),
                    fmt3(mean(rs.iter().filter_map(|r| r.event_precision))),
                    fmt3(mean(rs.iter().filter_map(|r| r.event_recall))),
                    format!("{:.2}", 100.0 * mean(rates.iter().copied()).unwrap_or(0.0)),
                    format!("{:.2}", 100.0 * median(rates).unwrap_or(0.0)),
                    format!("{:.2}", rs.iter().map(|r| r.adaptations).sum::<usize>() as f64 / rs.len() as f64),
                    rs.iter().map(|r| r.false_adaptations).sum::<usize>().to_string(),
                    format!("{:.0}", mean(rs.iter().map(|r| r.rows_per_s)).unwrap_or(0.0)),
                ]);
            }
            for (name, p) in peers {
                let v: Vec<(f64, f64)> = files.iter().filter_map(|f| p.get(f).copied()).collect();
                if v.is_empty() {
                    continue;
                }
                rows.push(vec![
                    h.clone(),
                    g.clone(),
                    name.clone(),
                    v.len().to_string(),
                    fmt3(mean(v.iter().map(|x| x.0))),
                    fmt3(mean(v.iter().map(|x| x.1))),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                    "-".into(),
                ]);
            }
        }
    }
    println!(
        "{}",
        table(
            &[
                "half", "group", "method", "files", "VUS-PR", "AUC-PR", "ev-P", "ev-R", "alarm%", "med%", "adapt",
                "false", "rows/s"
            ],
            &rows
        )
    );
    // Targets: online VUS-PR vs the best peer of each protocol, on the same files.
    let online = if args.methods.iter().any(|m| m == "adapt") { "adapt" } else { "static" };
    let mut trows = Vec::new();
    for g in &groups {
        let rs: Vec<&FileResult> =
            results.iter().filter(|r| &r.group == g && r.method == online && r.vus_pr.is_some()).collect();
        if rs.is_empty() {
            continue;
        }
        let ours = mean(rs.iter().filter_map(|r| r.vus_pr)).unwrap_or(0.0);
        let mut cells = vec![g.clone(), format!("{ours:.3}")];
        for proto in ["whole", "prefix"] {
            // Each peer on the files it has results for, ours on the same files.
            let best = peers
                .iter()
                .filter(|(n, _)| n.contains(proto))
                .filter_map(|(n, p)| {
                    let pairs: Vec<(f64, f64)> =
                        rs.iter().filter_map(|r| Some((r.vus_pr?, p.get(&r.file)?.0))).collect();
                    let k = pairs.len();
                    (k > 0).then(|| {
                        let o = mean(pairs.iter().map(|x| x.0)).unwrap_or(0.0);
                        let v = mean(pairs.iter().map(|x| x.1)).unwrap_or(0.0);
                        (v, o, k, n.clone())
                    })
                })
                .max_by(|a, b| a.0.total_cmp(&b.0));
            match best {
                Some((v, o, k, n)) => {
                    let on = if k == rs.len() { String::new() } else { format!(", {k} files, ours {o:.3}") };
                    cells.push(format!("{v:.3} ({n}{on})"));
                    cells.push(if o >= v { "yes".into() } else { "NO".into() });
                }
                None => {
                    cells.push("-".into());
                    cells.push("-".into());
                }
            }
        }
        let rates: Vec<f64> = rs.iter().filter_map(|r| r.alarm_rate_unlabelled).collect();
        let recall = mean(rs.iter().filter_map(|r| r.event_recall)).unwrap_or(0.0);
        let med = median(rates).unwrap_or(0.0);
        cells.push(format!("{:.2} %", 100.0 * med));
        cells.push(format!("{recall:.2}"));
        cells.push(if med <= 0.01 && recall >= 0.7 { "yes".into() } else { "NO".into() });
        trows.push(cells);
    }
    println!(
        "targets ({online}, all selected files):\n{}",
        table(
            &[
                "group",
                "VUS-PR",
                "best peer (whole)",
                "≥",
                "best peer (prefix)",
                "≥",
                "median alarm%",
                "ev-R",
                "≤1 % & ≥0.7"
            ],
            &trows
        )
    );
}

/// Speed of the monitor at `m` columns with a model of window `w`, hidden `h` (one thread).
#[derive(Serialize, Debug)]
pub struct Speed {
    pub columns: usize,
    pub window: usize,
    pub hidden: usize,
    pub latent: usize,
    pub flops_per_row: f64,
    pub gemm_gflops: f64,
    pub batch_rows_per_s: f64,
    pub batch_gflops: f64,
    pub push1_p50_us: f64,
    pub push1_p99_us: f64,
    pub adapt_ms_median: f64,
    pub state_bytes: usize,
    pub adapter_bytes: usize,
}

/// FLOPs of one causal row: encoder over the `w·m` window, decoder of the newest `steps`
/// steps (multiply-adds count 2).
pub fn causal_flops(w: usize, m: usize, h: usize, d: usize, steps: usize) -> f64 {
    2.0 * ((w * m * h + h * 2 * d) + (d * h + h * steps * m)) as f64
}

/// The machine's single-thread f32 GEMM rate at the encoder's shape (256 windows × `k` →
/// `n`), in GFLOP/s (best of several runs).
fn gemm_rate(k: usize, n: usize) -> f64 {
    let rows = 256;
    let a: Vec<f32> = (0..rows * k).map(|i| ((i * 7919) % 1000) as f32 * 1e-3).collect();
    let b: Vec<f32> = (0..k * n).map(|i| ((i * 104729) % 1000) as f32 * 1e-3).collect();
    let mut c = vec![0.0f32; rows * n];
    let mut best = f64::INFINITY;
    for _ in 0..15 {
        let t = Instant::now();
        lara_vae::matmul(rows, n, k, &a, false, &b, false, 0.0, &mut c);
        best = best.min(t.elapsed().as_secs_f64());
    }
    2.0 * (rows * n * k) as f64 / best / 1e9
}

pub fn speed(m: usize, w: usize, h: usize, adapt_stride: Option<usize>) -> Result<Speed> {
    let n_train = 1200;
    let mut vals = Vec::with_capacity(n_train * m);
    for t in 0..n_train {
        for j in 0..m {
            vals.push(((t as f32) * 0.07 * (1.0 + j as f32 * 0.1)).sin() + 0.01 * ((t * 31 + j * 17) % 13) as f32);
        }
    }
    let cols: Vec<String> = (0..m).map(|j| format!("c{j}")).collect();
    let series = Series::new(vals.clone(), n_train, cols.clone(), None, None, n_train)?;
    let opts = FitOptions {
        window: w,
        train: TrainConfig { hidden: h, max_steps: 5, ..TrainConfig::default() },
        ..FitOptions::default()
    };
    let det = Arc::new(lara_vae::Detector::fit(&series, &opts, &mut |_| {})?);
    let d = det.vae.latent();
    let rows: Vec<Vec<f32>> = (0..n_train).map(|t| vals[t * m..(t + 1) * m].to_vec()).collect();
    let cfg = lara_stream::MonitorConfig { policy: Policy::Static, ..Default::default() };
    // Batch scoring: 1024-row pushes (best of 3).
    let mut best = f64::INFINITY;
    for _ in 0..3 {
        let mut mon = Monitor::new(det.clone(), cfg.clone())?;
        let t = Instant::now();
        for c in rows.chunks(1024) {
            mon.push(c)?;
        }
        best = best.min(t.elapsed().as_secs_f64());
    }
    let batch_rows_per_s = n_train as f64 / best;
    // Single-row pushes.
    let mut mon = Monitor::new(det.clone(), cfg)?;
    let mut lat = Vec::with_capacity(n_train);
    for r in &rows {
        let t = Instant::now();
        mon.push(std::slice::from_ref(r))?;
        lat.push(t.elapsed().as_secs_f64() * 1e6);
    }
    lat.sort_by(f64::total_cmp);
    let q = |p: f64| lat[((p * lat.len() as f64) as usize).min(lat.len() - 1)];
    // Adaptation on slots + w − 1 rows (what the monitor uses), median of 9.
    let k = 40 + w - 1;
    let mut scaled = vals[..k * m].to_vec();
    det.meta.scaler.transform(&mut scaled);
    let mut ad = Vec::new();
    let mut adapter_bytes = 0;
    for _ in 0..9 {
        let t = Instant::now();
        let mut ac = lara_stream::MonitorConfig::default().adapt;
        if let Some(st) = adapt_stride {
            ac.stride = st;
        }
        let (a, _) = det.adapt_scaled(&scaled, k, &ac, None)?;
        ad.push(t.elapsed().as_secs_f64() * 1e3);
        adapter_bytes = a.meta.adaptation.as_ref().map(|x| x.adapter.param_bytes()).unwrap_or(0);
    }
    ad.sort_by(f64::total_cmp);
    let flops = causal_flops(w, m, h, d, det.causal_steps());
    Ok(Speed {
        columns: m,
        window: w,
        hidden: h,
        latent: d,
        flops_per_row: flops,
        gemm_gflops: gemm_rate(w * m, h),
        batch_rows_per_s,
        batch_gflops: batch_rows_per_s * flops / 1e9,
        push1_p50_us: q(0.5),
        push1_p99_us: q(0.99),
        adapt_ms_median: ad[ad.len() / 2],
        state_bytes: mon.state_bytes_without_rows(),
        adapter_bytes,
    })
}

pub fn print_speed(s: &Speed) {
    println!(
        "speed (one thread, {} columns, window {}, hidden {}, latent {}):\n  \
         FLOPs per causal row {:.2} M; GEMM rate of this machine at the encoder's shape {:.1} GFLOP/s\n  \
         batch scoring {:.0} rows/s = {:.1} GFLOP/s ({:.2}× below the GEMM rate; target ≤ 2×, ≥ 50 000 rows/s)\n  \
         single-row push p50 {:.0} µs, p99 {:.0} µs (target p99 < 1 ms)\n  \
         adaptation (LARA, 40 slots) median {:.1} ms (target < 20 ms); adapter {} B\n  \
         monitor state on a shared base model, without its row buffer: {} B (target < 64 KiB)",
        s.columns,
        s.window,
        s.hidden,
        s.latent,
        s.flops_per_row / 1e6,
        s.gemm_gflops,
        s.batch_rows_per_s,
        s.batch_gflops,
        s.gemm_gflops / s.batch_gflops.max(1e-9),
        s.push1_p50_us,
        s.push1_p99_us,
        s.adapt_ms_median,
        s.adapter_bytes,
        s.state_bytes
    );
}
