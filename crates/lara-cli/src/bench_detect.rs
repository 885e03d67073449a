//! `lara bench detect`: the VAE detector on a panel of benchmark files, beside the TSB-AD
//! peers' recorded results on the same files; plus training-step and scoring-throughput
//! micro-benchmarks.

use crate::eval::{estimated_window, OutputFormat};
use crate::report::{fmt3, table};
use anyhow::{bail, Context, Result};
use clap::Args;
use lara_core::{read_csv, CsvOptions};
use lara_vae::train::{adam_step, Adam};
use lara_vae::vae::{Activation, Vae, VaeConfig};
use lara_vae::{score_rows, Detector, FitOptions, ScoreKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// The TSB-AD methods whose recorded results are compared; the first four are the deep peers.
const PEERS: [&str; 6] = ["OmniAnomaly", "Donut", "USAD", "AutoEncoder", "PCA", "IForest"];
const DEEP_PEERS: [&str; 4] = ["OmniAnomaly", "Donut", "USAD", "AutoEncoder"];
const METRICS: [&str; 4] = ["VUS-PR", "AUC-PR", "PA-F1", "Affiliation-F"];

/// Shown after the options in `--help`.
const BENCH_DETECT_HELP: &str = "\
For each file of the panel: train on the training prefix, score every row, evaluate with
TSB-AD's metrics and window (as ../shared/peers/run_peer.py does for the peers), and time
train+score. Peers' figures are read from their recorded runs (dev_<method>.jsonl, one JSON
line per file, produced by ../shared/peers/run_peer.py on this machine); they are not rerun.

Then two micro-benchmarks: ms per Adam step (batch 64, window 100×38, hidden 256, latent 32,
the configuration measured for burn / candle / libtorch in the issue), and scoring
throughput (time steps/s) at strides w/2 and w.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_DETECT_HELP)]
pub struct DetectBenchArgs {
    /// Directory of TSB-AD CSV files.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/tsbad")]
    pub data_dir: PathBuf,
    /// File names to run (one per line).
    #[arg(long, value_name = "LIST.txt", default_value = "../shared/peers/dev_panel.txt")]
    pub panel: PathBuf,
    /// Directory with the peers' recorded results (dev_<method>.jsonl).
    #[arg(long, value_name = "DIR", default_value = "../shared/peers/results")]
    pub peers: PathBuf,
    /// Only the first N files of the panel.
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Random seed of the training.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scoring stride (0 = the detector's default, window / 2).
    #[arg(long, default_value_t = 0)]
    pub stride: usize,
    /// Skip the micro-benchmarks.
    #[arg(long)]
    pub no_micro: bool,
    /// Also write one JSON line per file here.
    #[arg(long, value_name = "OUT.jsonl")]
    pub jsonl: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Serialize, Clone)]
struct FileResult {
    file: String,
    group: String,
    rows: usize,
    columns: usize,
    sliding_window: usize,
    seconds: f64,
    alarm_rate: f64,
    metrics: BTreeMap<String, Option<f64>>,
}

type PeerResults = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

fn load_peers(dir: &Path) -> Result<PeerResults> {
    let mut out = PeerResults::new();
    for m in PEERS {
        let path = dir.join(format!("dev_{m}.jsonl"));
        let Ok(text) = std::fs::read_to_string(&path) else {
            tracing::warn!("no peer results at {}", path.display());
            continue;
        };
        for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}: line {}", path.display(), i + 1))?;
            if v.get("VUS-PR").is_some() {
                let file = v["file"].as_str().unwrap_or_default().to_string();
                out.entry(m.to_string()).or_default().insert(file, v);
            }
        }
    }
    Ok(out)
}

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

pub fn run(args: &DetectBenchArgs) -> Result<()> {
    let names: Vec<String> = std::fs::read_to_string(&args.panel)
        .with_context(|| format!("reading panel list {}", args.panel.display()))?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    if names.is_empty() {
        bail!("{}: no files listed", args.panel.display());
    }
    let peers = load_peers(&args.peers)?;
    let mut opts = FitOptions::default();
    opts.train.seed = args.seed;
    opts.score_stride = args.stride;
    let bar = indicatif::ProgressBar::new(names.len() as u64);
    let mut results = Vec::new();
    let mut jsonl = String::new();
    for name in &names {
        bar.set_message(name.clone());
        let path = args.data_dir.join(name);
        let t0 = Instant::now();
        let series = read_csv(&path, &CsvOptions::default())?;
        let detector = Detector::fit(&series, &opts, &mut |_| {}).with_context(|| format!("training on {name}"))?;
        let detection = detector.detect(&series, None)?;
        let seconds = t0.elapsed().as_secs_f64();
        let labels = series.labels.as_ref().with_context(|| format!("{name}: no labels"))?;
        let window = estimated_window(&series);
        let suite = lara_metrics::evaluate(labels, &detection.score, window)?;
        let metrics = suite.named().iter().map(|(k, v)| (k.to_string(), *v)).collect();
        let r = FileResult {
            file: name.clone(),
            group: name.split('_').nth(1).unwrap_or("?").to_string(),
            rows: series.n_rows,
            columns: series.n_cols(),
            sliding_window: window,
            seconds,
            alarm_rate: detection.is_anomaly.iter().filter(|&&a| a).count() as f64 / series.n_rows as f64,
            metrics,
        };
        jsonl.push_str(&serde_json::to_string(&r)?);
        jsonl.push('\n');
        results.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(p) = &args.jsonl {
        std::fs::write(p, &jsonl).with_context(|| format!("writing {}", p.display()))?;
    }
    let peak = peak_rss_mib();
    let micro = if args.no_micro { None } else { Some(micro_benchmarks()) };
    match args.format {
        OutputFormat::Json => {
            let out = serde_json::json!({
                "files": results,
                "groups": group_summary(&results, &peers),
                "peak_rss_mib": peak,
                "micro": micro,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        OutputFormat::Table => print_tables(&results, &peers, peak, micro.as_ref()),
    }
    Ok(())
}

#[derive(Serialize)]
struct GroupRow {
    group: String,
    method: String,
    files: usize,
    means: BTreeMap<String, f64>,
    seconds: f64,
    peak_rss_mb: Option<f64>,
}

fn group_summary(results: &[FileResult], peers: &PeerResults) -> Vec<GroupRow> {
    let mut groups: BTreeMap<&str, Vec<&FileResult>> = BTreeMap::new();
    for r in results {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    let mut rows = Vec::new();
    for (g, rs) in groups {
        let n = rs.len() as f64;
        let means = METRICS
            .iter()
            .map(|k| (k.to_string(), rs.iter().map(|r| r.metrics[*k].unwrap_or(f64::NAN)).sum::<f64>() / n))
            .collect();
        rows.push(GroupRow {
            group: g.to_string(),
            method: "lara".into(),
            files: rs.len(),
            means,
            seconds: rs.iter().map(|r| r.seconds).sum::<f64>() / n,
            peak_rss_mb: None,
        });
        for m in PEERS {
            let Some(p) = peers.get(m) else { continue };
            let got: Vec<&serde_json::Value> = rs.iter().filter_map(|r| p.get(&r.file)).collect();
            if got.is_empty() {
                continue;
            }
            let k = got.len() as f64;
            let mean = |key: &str| got.iter().map(|v| v[key].as_f64().unwrap_or(f64::NAN)).sum::<f64>() / k;
            rows.push(GroupRow {
                group: g.to_string(),
                method: m.to_string(),
                files: got.len(),
                means: METRICS.iter().map(|key| (key.to_string(), mean(key))).collect(),
                seconds: mean("seconds"),
                peak_rss_mb: got.iter().filter_map(|v| v["peak_rss_mb"].as_f64()).reduce(f64::max),
            });
        }
    }
    rows
}

fn print_tables(results: &[FileResult], peers: &PeerResults, peak: Option<f64>, micro: Option<&Micro>) {
    let omni = peers.get("OmniAnomaly");
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let o = omni.and_then(|p| p.get(&r.file)).and_then(|v| v["seconds"].as_f64());
            vec![
                r.file.clone(),
                fmt3(r.metrics["VUS-PR"]),
                fmt3(r.metrics["AUC-PR"]),
                fmt3(r.metrics["PA-F1"]),
                fmt3(r.metrics["Affiliation-F"]),
                format!("{:.2}", r.seconds),
                o.map(|o| format!("{o:.1}")).unwrap_or_else(|| "-".into()),
                o.map(|o| format!("{:.1}", o / r.seconds)).unwrap_or_else(|| "-".into()),
                format!("{:.1}", 100.0 * r.alarm_rate),
            ]
        })
        .collect();
    print!("{}", table(&["file", "VUS-PR", "AUC-PR", "PA-F1", "Aff-F", "sec", "omni_sec", "speedup", "alarm%"], &rows));
    println!();
    let groups = group_summary(results, peers);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = vec![g.group.clone(), g.method.clone(), g.files.to_string()];
            row.extend(METRICS.iter().map(|k| format!("{:.3}", g.means[*k])));
            row.push(format!("{:.2}", g.seconds));
            row
        })
        .collect();
    let mut header = vec!["group", "method", "files"];
    header.extend(METRICS);
    header.push("sec/file");
    print!("{}", table(&header, &rows));
    println!();
    // Targets: VUS-PR ≥ best deep peer and ≥ PCA per group; time ≤ 1/10 of OmniAnomaly's.
    let mut target_rows = Vec::new();
    for g in groups.iter().filter(|g| g.method == "lara") {
        let peer_mean =
            |m: &str| groups.iter().find(|x| x.group == g.group && x.method == m).map(|x| x.means["VUS-PR"]);
        let best_deep = DEEP_PEERS
            .iter()
            .filter_map(|m| peer_mean(m).map(|v| (v, *m)))
            .fold(None, |a: Option<(f64, &str)>, b| Some(a.map_or(b, |a| if b.0 > a.0 { b } else { a })));
        let pca = peer_mean("PCA");
        let omni_s = groups.iter().find(|x| x.group == g.group && x.method == "OmniAnomaly").map(|x| x.seconds);
        let ours = g.means["VUS-PR"];
        let yes = |ok: bool| if ok { "yes" } else { "NO" }.to_string();
        target_rows.push(vec![
            g.group.clone(),
            format!("{ours:.3}"),
            best_deep.map(|(v, m)| format!("{v:.3} ({m})")).unwrap_or_else(|| "-".into()),
            best_deep.map(|(v, _)| yes(ours >= v)).unwrap_or_else(|| "-".into()),
            pca.map(|v| format!("{v:.3}")).unwrap_or_else(|| "-".into()),
            pca.map(|v| yes(ours >= v)).unwrap_or_else(|| "-".into()),
            omni_s.map(|o| format!("{:.1}×", o / g.seconds)).unwrap_or_else(|| "-".into()),
            omni_s.map(|o| yes(g.seconds * 10.0 <= o)).unwrap_or_else(|| "-".into()),
        ]);
    }
    print!(
        "{}",
        table(
            &["group", "lara VUS-PR", "best deep peer", "≥ deep", "PCA", "≥ PCA", "Omni time / ours", "≥ 10×"],
            &target_rows
        )
    );
    if let Some(p) = peak {
        println!("\npeak RSS of this run (all files, one process): {p:.0} MiB");
    }
    if let Some(m) = micro {
        println!(
            "\nAdam step, batch 64, window 100×38, hidden 256, latent 32: {:.2} ms ({} threads)",
            m.adam_step_ms, m.threads
        );
        for (stride, sps) in &m.scoring {
            println!("scoring throughput, window 100×38, stride {stride}: {:.2} M time steps/s", sps / 1e6);
        }
    }
}

#[derive(Serialize)]
struct Micro {
    threads: usize,
    adam_step_ms: f64,
    /// (stride, time steps per second) on 50 000 rows.
    scoring: Vec<(usize, f64)>,
}

/// Median-free micro-benchmark: mean of 40 Adam steps after 5 warm-up steps, and the best of
/// 3 scoring passes per stride.
fn micro_benchmarks() -> Micro {
    let (b, w, m) = (64, 100, 38);
    let cfg = VaeConfig { window: w, n_features: m, hidden: 256, depth: 1, latent: 32, activation: Activation::Relu };
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let mut vae = Vae::new(cfg, &mut rng);
    let x: Vec<f32> = (0..b * w * m).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let mut adam = Adam::new(vae.params().len(), 1e-3);
    let mut grad = Vec::new();
    for _ in 0..5 {
        adam_step(&mut vae, &mut adam, &mut grad, &x, b, 1.0, &mut rng);
    }
    let steps = 40;
    let t = Instant::now();
    for _ in 0..steps {
        adam_step(&mut vae, &mut adam, &mut grad, &x, b, 1.0, &mut rng);
    }
    let adam_step_ms = t.elapsed().as_secs_f64() * 1e3 / steps as f64;
    let rows = 50_000;
    let values: Vec<f32> = (0..rows * m).map(|_| rng.gen_range(-1.0..1.0)).collect();
    let scoring = [w / 2, w]
        .iter()
        .map(|&stride| {
            let best = (0..3)
                .map(|_| {
                    let t = Instant::now();
                    let s = score_rows(&vae, &values, rows, stride, ScoreKind::Nll);
                    assert_eq!(s.score.len(), rows);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            (stride, rows as f64 / best)
        })
        .collect();
    Micro { threads: lara_vae::threads(), adam_step_ms, scoring }
}
