//! `lara bench …`: side-by-side benchmarks, ours vs. the reference on the same inputs.

use crate::eval::{estimated_window, OutputFormat};
use crate::report::table;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use lara_core::{read_csv, CsvOptions, Series};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

#[derive(Subcommand, Debug)]
pub enum BenchCommand {
    /// Our metric suite vs. TSB-AD 1.5's Python `get_metrics` on the same labels, scores and
    /// window: time per file, the speed ratio, and the largest difference of any metric.
    Metrics(MetricsBenchArgs),
    /// The VAE detector on a panel of benchmark files beside the TSB-AD peers (accuracy per
    /// dataset group, seconds per file, peak memory), plus training and scoring speed.
    Detect(crate::bench_detect::DetectBenchArgs),
    /// LARA vs. no adaptation, fine-tuning, scratch training and a full retrain after a
    /// normal-pattern change (cross-entity pairs and a synthetic shift).
    Adapt(crate::bench_adapt::AdaptBenchArgs),
    /// The online monitor on every benchmark file: static vs. adapt vs. adapt+retrain beside
    /// the TSB-AD peers in both protocols, per dataset group and per half of the files.
    Online(crate::bench_online::OnlineBenchArgs),
    /// `lara serve` on loopback under concurrent clients: rows/s, request latency, memory per
    /// entity, beside the same scoring in process.
    Serve(crate::bench_serve::ServeBenchArgs),
    /// Workers on NATS JetStream (`lara worker`): rows/s with 1, 2 and 3 workers, failover
    /// time after a `kill -9`, publish-to-result latency, per-entity cost.
    Cluster(crate::bench_cluster::ClusterBenchArgs),
    /// CoLLaTe vs. detector only, LLM only, naive average and the MSE-loss ablation.
    Collate(crate::collate_cmds::CollateBenchArgs),
}

/// Shown after the options in `--help`.
const BENCH_METRICS_HELP: &str = "\
Scores are a fixed, detector-free baseline computed from each file (the sum over z-scored
columns of |x_t − x_{t−1}|), so both sides see realistic, tie-rich score series. The
reference runs in one Python process; only its `get_metrics` calls are timed.

The reference environment is found at --python, $LARA_REFERENCE_PYTHON,
~/.cache/lara-peers/metrics-venv/bin/python or ~/.cache/lara-peers/venv/bin/python
(create one with scripts/setup-reference.sh). Without it, only our timings are printed.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_METRICS_HELP)]
pub struct MetricsBenchArgs {
    /// Directory of TSB-AD CSV files.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/tsbad")]
    pub data_dir: PathBuf,
    /// Only the files named in this list (one file name per line), e.g. a benchmark panel.
    #[arg(long, value_name = "LIST.txt")]
    pub panel: Option<PathBuf>,
    /// At most this many files (after --panel), in name order.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Python interpreter with TSB-AD 1.5 installed.
    #[arg(long, value_name = "PY")]
    pub python: Option<PathBuf>,
    /// Skip the reference even if it is available.
    #[arg(long)]
    pub no_reference: bool,
    /// Also time VUS on a synthetic 100 000-point series with window 100 (both sides).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub synthetic: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub fn run(cmd: &BenchCommand) -> Result<()> {
    match cmd {
        BenchCommand::Metrics(a) => metrics(a),
        BenchCommand::Detect(a) => crate::bench_detect::run(a),
        BenchCommand::Adapt(a) => crate::bench_adapt::run(a),
        BenchCommand::Collate(a) => crate::collate_cmds::bench(a),
        BenchCommand::Online(a) => crate::bench_online::run(a),
        BenchCommand::Serve(a) => crate::bench_serve::run(a),
        BenchCommand::Cluster(a) => crate::bench_cluster::run(a),
    }
}

/// The detector-free score used by the metrics benchmark: Σ_j |z_{t,j} − z_{t−1,j}| over
/// columns z-scored on the whole series (0 for the first row).
pub fn difference_score(series: &Series) -> Vec<f64> {
    let m = series.n_cols();
    let n = series.n_rows;
    let mut stats = vec![(0.0f64, 1.0f64); m];
    for (j, st) in stats.iter_mut().enumerate() {
        let col = series.column(j);
        let mean = col.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        let var = col.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n as f64;
        *st = (mean, if var > 0.0 { var.sqrt() } else { 1.0 });
    }
    let mut out = vec![0.0; n];
    for t in 1..n {
        let (a, b) = (series.row(t - 1), series.row(t));
        out[t] = (0..m).map(|j| ((b[j] - a[j]) as f64 / stats[j].1).abs()).sum();
    }
    out
}

#[derive(Serialize, Clone)]
struct BenchRow {
    case: String,
    rows: usize,
    window: usize,
    ours_ms: f64,
    reference_ms: Option<f64>,
    speedup: Option<f64>,
    max_abs_diff: Option<f64>,
}

struct Job {
    name: String,
    labels: Vec<u8>,
    scores: Vec<f64>,
    window: usize,
    vus_only: bool,
}

fn list_files(args: &MetricsBenchArgs) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.data_dir)
        .with_context(|| format!("reading directory {}", args.data_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let s = p.to_string_lossy();
            s.ends_with(".csv") || s.ends_with(".csv.gz")
        })
        .collect();
    files.sort();
    if let Some(panel) = &args.panel {
        let text = std::fs::read_to_string(panel).with_context(|| format!("reading panel list {}", panel.display()))?;
        let names: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        files.retain(|p| p.file_name().is_some_and(|f| names.contains(&f.to_string_lossy().as_ref())));
        if files.len() != names.len() {
            bail!(
                "{}: {} names listed but {} found in {}",
                panel.display(),
                names.len(),
                files.len(),
                args.data_dir.display()
            );
        }
    }
    if let Some(n) = args.limit {
        files.truncate(n);
    }
    if files.is_empty() {
        bail!("no CSV files in {}", args.data_dir.display());
    }
    Ok(files)
}

/// A synthetic 100k-point series: smooth scores with 40 anomaly segments of 20–200 points.
fn synthetic_job() -> Job {
    let n = 100_000;
    let mut labels = vec![0u8; n];
    let mut state: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state >> 11) as f64 / (1u64 << 53) as f64
    };
    for k in 0..40 {
        let start = k * 2500 + (next() * 1000.0) as usize;
        let len = 20 + (next() * 180.0) as usize;
        labels[start..(start + len).min(n)].iter_mut().for_each(|l| *l = 1);
    }
    let scores = (0..n).map(|t| (t as f64 * 0.01).sin() * 0.2 + next() + labels[t] as f64 * 0.5).collect();
    Job { name: "synthetic VUS only (100k pts)".into(), labels, scores, window: 100, vus_only: true }
}

fn time_ours(job: &Job) -> Result<(f64, Vec<Option<f64>>)> {
    let t0 = Instant::now();
    let values = if job.vus_only {
        let v = lara_metrics::vus::vus(&job.labels, &job.scores, job.window);
        vec![v.map(|v| v.pr), v.map(|v| v.roc)]
    } else {
        let suite = lara_metrics::evaluate(&job.labels, &job.scores, job.window)?;
        suite.named().iter().map(|(_, v)| *v).collect()
    };
    Ok((t0.elapsed().as_secs_f64() * 1e3, values))
}

fn metrics(args: &MetricsBenchArgs) -> Result<()> {
    let files = list_files(args)?;
    let mut jobs = Vec::new();
    let bar = indicatif::ProgressBar::new(files.len() as u64).with_message("reading files");
    for path in &files {
        let series = read_csv(path, &CsvOptions::default())?;
        let Some(labels) = series.labels.clone() else { bail!("{}: no labels", path.display()) };
        if !labels.contains(&1) {
            tracing::warn!("{}: no anomaly in the labels; skipped (VUS undefined)", path.display());
            bar.inc(1);
            continue;
        }
        let name = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        jobs.push(Job {
            name,
            window: estimated_window(&series),
            scores: difference_score(&series),
            labels,
            vus_only: false,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    if args.synthetic {
        jobs.push(synthetic_job());
    }
    let python = if args.no_reference { None } else { find_python(args.python.as_deref()) };
    let reference = match &python {
        Some(py) => Some(run_reference(py, &jobs)?),
        None => {
            eprintln!(
                "reference: no Python with TSB-AD 1.5 found (see `lara bench metrics --help`); printing ours only"
            );
            None
        }
    };
    let bar = indicatif::ProgressBar::new(jobs.len() as u64).with_message("ours");
    let mut rows = Vec::new();
    for (i, job) in jobs.iter().enumerate() {
        // Best of 3 runs: the first run also pays page faults and allocator warm-up.
        let mut best = f64::INFINITY;
        let mut values = Vec::new();
        for _ in 0..3 {
            let (ms, v) = time_ours(job)?;
            best = best.min(ms);
            values = v;
        }
        let (reference_ms, max_abs_diff) = match &reference {
            Some(r) => {
                let (ms, rv) = &r[i];
                let diff = values
                    .iter()
                    .zip(rv)
                    .map(|(a, b)| match (a, b) {
                        (Some(a), Some(b)) => (a - b).abs(),
                        (None, None) => 0.0,
                        _ => f64::INFINITY,
                    })
                    .fold(0.0, f64::max);
                (Some(*ms), Some(diff))
            }
            None => (None, None),
        };
        rows.push(BenchRow {
            case: job.name.clone(),
            rows: job.labels.len(),
            window: job.window,
            ours_ms: best,
            speedup: reference_ms.map(|r| r / best),
            reference_ms,
            max_abs_diff,
        });
        bar.inc(1);
    }
    bar.finish_and_clear();
    print_rows(&rows, args.format, python.as_deref())
}

fn print_rows(rows: &[BenchRow], format: OutputFormat, python: Option<&Path>) -> Result<()> {
    let files: Vec<&BenchRow> = rows.iter().filter(|r| !r.case.starts_with("synthetic")).collect();
    let ours_total: f64 = files.iter().map(|r| r.ours_ms).sum();
    let ref_total: Option<f64> = files.iter().map(|r| r.reference_ms).sum();
    let worst =
        rows.iter().filter_map(|r| r.max_abs_diff).fold(None, |a: Option<f64>, d| Some(a.map_or(d, |a| a.max(d))));
    if format == OutputFormat::Json {
        let out = serde_json::json!({
            "rows": rows,
            "files": files.len(),
            "ours_total_ms": ours_total,
            "reference_total_ms": ref_total,
            "speedup_total": ref_total.map(|r| r / ours_total),
            "max_abs_diff": worst,
            "reference_python": python.map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
        return Ok(());
    }
    let f = |v: Option<f64>, p: usize| v.map(|x| format!("{x:.p$}")).unwrap_or_else(|| "-".into());
    let mut table_rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.case.clone(),
                r.rows.to_string(),
                r.window.to_string(),
                format!("{:.2}", r.ours_ms),
                f(r.reference_ms, 1),
                f(r.speedup, 1),
                r.max_abs_diff.map(|d| format!("{d:.1e}")).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    table_rows.push(vec![
        format!("TOTAL ({} files, full suite)", files.len()),
        files.iter().map(|r| r.rows).sum::<usize>().to_string(),
        String::new(),
        format!("{ours_total:.1}"),
        f(ref_total, 1),
        f(ref_total.map(|r| r / ours_total), 1),
        worst.map(|d| format!("{d:.1e}")).unwrap_or_else(|| "-".into()),
    ]);
    print!("{}", table(&["case", "rows", "window", "ours_ms", "tsbad_ms", "ratio", "max|diff|"], &table_rows));
    Ok(())
}

/// Locates a Python interpreter that can import TSB-AD's metrics.
fn find_python(explicit: Option<&Path>) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = explicit {
        candidates.push(p.to_path_buf());
    }
    if let Ok(p) = std::env::var("LARA_REFERENCE_PYTHON") {
        candidates.push(p.into());
    }
    if let Ok(home) = std::env::var("HOME") {
        let cache = Path::new(&home).join(".cache/lara-peers");
        candidates.push(cache.join("metrics-venv/bin/python"));
        candidates.push(cache.join("venv/bin/python"));
    }
    candidates.into_iter().find(|py| {
        Command::new(py).args(["-c", "import TSB_AD.evaluation.metrics"]).output().is_ok_and(|o| o.status.success())
    })
}

/// Our own driver for the reference: reads the jobs, times each `get_metrics` (or VUS-only
/// `generate_curve`) call and prints one JSON line per job.
const REFERENCE_DRIVER: &str = r#"
import json, sys, time, warnings
import numpy as np
warnings.filterwarnings("ignore")
from TSB_AD.evaluation.metrics import get_metrics
from TSB_AD.evaluation.basic_metrics import generate_curve
ORDER = ["AUC-PR", "AUC-ROC", "VUS-PR", "VUS-ROC", "Standard-F1", "PA-F1", "Event-based-F1", "R-based-F1", "Affiliation-F"]
for line in open(sys.argv[1]):
    job = json.loads(line)
    labels = np.array(job["labels"], dtype=int)
    scores = np.array(job["scores"], dtype=float)
    t0 = time.perf_counter()
    if job["vus_only"]:
        r = generate_curve(labels, scores, job["window"], "opt", 250)
        values = [float(r[7]), float(r[6])]
    else:
        m = get_metrics(scores, labels, slidingWindow=job["window"])
        values = [float(m[k]) for k in ORDER]
    ms = (time.perf_counter() - t0) * 1e3
    print(json.dumps({"ms": ms, "values": [None if v != v else v for v in values]}), flush=True)
"#;

fn run_reference(python: &Path, jobs: &[Job]) -> Result<Vec<(f64, Vec<Option<f64>>)>> {
    let dir = std::env::temp_dir().join(format!("lara-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let jobs_path = dir.join("jobs.jsonl");
    let driver_path = dir.join("driver.py");
    let mut text = String::new();
    for j in jobs {
        let line =
            serde_json::json!({"labels": j.labels, "scores": j.scores, "window": j.window, "vus_only": j.vus_only});
        text.push_str(&line.to_string());
        text.push('\n');
    }
    std::fs::write(&jobs_path, text)?;
    std::fs::write(&driver_path, REFERENCE_DRIVER)?;
    eprintln!("reference: running TSB-AD 1.5 with {} on {} cases …", python.display(), jobs.len());
    let out = Command::new(python).arg(&driver_path).arg(&jobs_path).output()?;
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("reference run failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let mut results = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        #[derive(serde::Deserialize)]
        struct R {
            ms: f64,
            values: Vec<Option<f64>>,
        }
        let r: R = serde_json::from_str(line).with_context(|| format!("reference output line {line:?}"))?;
        results.push((r.ms, r.values));
    }
    if results.len() != jobs.len() {
        bail!("reference returned {} results for {} cases", results.len(), jobs.len());
    }
    Ok(results)
}
