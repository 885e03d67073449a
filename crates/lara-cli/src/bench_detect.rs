//! `lara bench detect`: the VAE detector on a panel of benchmark files, beside the TSB-AD
//! peers' recorded results on the same files; plus training-step and scoring-throughput
//! micro-benchmarks.

use crate::eval::{estimated_window, OutputFormat};
use crate::report::{fmt3, table};
use anyhow::{bail, Context, Result};
use clap::Args;
use lara_core::{read_csv, CsvOptions};
use lara_metrics::{alarm_quality, AlarmQuality};
use lara_vae::train::{adam_step, Adam};
use lara_vae::vae::{Activation, Vae, VaeConfig};
use lara_vae::{score_rows, Detector, FitOptions, ScoreKind};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

/// The TSB-AD methods whose recorded results are read, as fitted in lara's two protocols (the
/// ones its targets compare with). The deep ones are fitted on the training prefix (TSB-AD's
/// protocol for them), `PCA-prefix` and `IForest-prefix` too (`bench/peers/prefix_<method>.jsonl`,
/// `scripts/run_peer_prefix.py`); `PCA` and `IForest` on the whole series (TSB-AD's protocol).
const PREFIX_PEERS: [&str; 6] = ["OmniAnomaly", "Donut", "USAD", "AutoEncoder", "PCA-prefix", "IForest-prefix"];
const WHOLE_PEERS: [&str; 2] = ["IForest", "PCA"];

fn peers_of(protocol: Protocol) -> &'static [&'static str] {
    match protocol {
        Protocol::Prefix => &PREFIX_PEERS,
        Protocol::Whole => &WHOLE_PEERS,
    }
}

const METRICS: [&str; 4] = ["VUS-PR", "AUC-PR", "PA-F1", "Affiliation-F"];

/// Shown after the options in `--help`.
const BENCH_DETECT_HELP: &str = "\
For each file: train (on the training prefix, or on the whole series with --protocol whole),
score every row, evaluate with TSB-AD's metrics and window (as ../shared/peers/run_peer.py does
for the peers), and time train+score. At the model's label-free threshold it also reports
alarm quality: event precision (alarm episodes that touch a labelled event, ±window/2 rows),
event recall (events that raised an alarm) and the alarm rate on unlabelled rows (test rows
only in the prefix protocol). In the whole protocol the threshold is fitted on the scored rows
themselves and the margin over the training scores puts it above all of them: no alarms, so the
alarm columns say nothing there.

Files are split into two halves for file-level cross-validation: within each group, in name
order, files alternate A, B, A, B, …; defaults are chosen on one half and confirmed on the
other. The summary reports each half and both.

Peers' figures are read from their recorded runs (dev_<method>.jsonl and dev_all_<method>.jsonl,
one JSON line per file, produced by ../shared/peers/run_peer.py on this machine): the shared
ones (the 24-file panel; IForest and PCA on all files) and the repository's bench/peers (the
deep peers on more files; IForest and PCA fitted on the training prefix, prefix_<method>.jsonl:
bench/peers/README.md); they are not rerun. Each protocol is compared with the peers fitted the
same way: prefix with the deep peers, PCA-prefix and IForest-prefix; whole with PCA and IForest.
Every comparison averages lara over exactly the files the peer has.

Then two micro-benchmarks: ms per Adam step (batch 64, window 100×38, hidden 256, latent 32)
and scoring throughput (time steps/s) at strides w/2 and w.

Examples:
  lara bench detect --no-micro                       # all files, prefix protocol
  lara bench detect --protocol whole --no-micro      # TSB-AD's protocol for IForest / PCA
  lara bench detect --half a --options '{\"smooth\": 50, \"train\": {\"hidden\": 128}}'";

/// How the detector is trained for the benchmark.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Train on the training prefix named in the file (`_tr_N_`), score every row.
    Prefix,
    /// Train on every row, score every row (TSB-AD's protocol for unsupervised IForest / PCA).
    Whole,
}

/// Which half of the file-level split to run.
#[derive(Copy, Clone, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Half {
    A,
    B,
    Both,
}

#[derive(Args, Debug)]
#[command(after_help = BENCH_DETECT_HELP)]
pub struct DetectBenchArgs {
    /// Directory of TSB-AD CSV files.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/tsbad")]
    pub data_dir: PathBuf,
    /// `all` (every .csv in --data-dir) or a file listing names, one per line (e.g.
    /// ../shared/peers/dev_panel.txt).
    #[arg(long, value_name = "all|LIST.txt", default_value = "all")]
    pub panel: String,
    /// Directories with the peers' recorded results (dev_<method>.jsonl,
    /// dev_all_<method>.jsonl); repeat the flag for several. A file's line in a later directory
    /// replaces an earlier one's.
    #[arg(long, value_name = "DIR", default_values = ["../shared/peers/results", "bench/peers"])]
    pub peers: Vec<PathBuf>,
    /// Training protocol.
    #[arg(long, value_enum, default_value_t = Protocol::Prefix)]
    pub protocol: Protocol,
    /// Half of the file-level split to run (see below).
    #[arg(long, value_enum, default_value_t = Half::Both)]
    pub half: Half,
    /// Only the first N files (after the half is chosen).
    #[arg(long, value_name = "N")]
    pub limit: Option<usize>,
    /// Random seed of the training.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Scoring stride (0 = the detector's default, window / 2).
    #[arg(long, default_value_t = 0)]
    pub stride: usize,
    /// Fit options as a JSON object merged over the defaults (a variant to try), e.g.
    /// '{"smooth": 50, "train": {"hidden": 128}}'.
    #[arg(long, value_name = "JSON")]
    pub options: Option<String>,
    /// Skip the micro-benchmarks.
    #[arg(long)]
    pub no_micro: bool,
    /// Also write each file's row scores here (`<file>.score.txt`, one per line).
    #[arg(long, value_name = "DIR")]
    pub scores_dir: Option<PathBuf>,
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
    /// "A" or "B": the file's half of the split.
    half: &'static str,
    rows: usize,
    columns: usize,
    train_rows: usize,
    sliding_window: usize,
    seconds: f64,
    /// The model's label-free threshold.
    threshold: f64,
    alarm_rate: f64,
    metrics: BTreeMap<String, Option<f64>>,
    alarms: AlarmQuality,
}

type PeerResults = BTreeMap<String, BTreeMap<String, serde_json::Value>>;

fn load_peers(dirs: &[PathBuf]) -> Result<PeerResults> {
    let mut out = PeerResults::new();
    for &m in PREFIX_PEERS.iter().chain(&WHOLE_PEERS) {
        let names: Vec<String> = match m.strip_suffix("-prefix") {
            Some(base) => vec![format!("prefix_{base}.jsonl")],
            None => vec![format!("dev_{m}.jsonl"), format!("dev_all_{m}.jsonl")],
        };
        let paths = dirs.iter().flat_map(|d| names.iter().map(move |n| d.join(n)));
        let mut found = false;
        for path in paths {
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            found = true;
            for (i, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
                let v = parse_python_json(line).with_context(|| format!("{}: line {}", path.display(), i + 1))?;
                if v.get("VUS-PR").is_some() {
                    let file = v["file"].as_str().unwrap_or_default().to_string();
                    out.entry(m.to_string()).or_default().insert(file, v);
                }
            }
        }
        if !found {
            tracing::warn!("no recorded results of {m} in {dirs:?}");
        }
    }
    Ok(out)
}

/// One JSON line written by Python's `json`, which spells undefined metrics as bare `NaN` /
/// `Infinity`: those are read as null.
pub fn parse_python_json(line: &str) -> serde_json::Result<serde_json::Value> {
    let line = line.replace(": NaN", ": null").replace(": -Infinity", ": null").replace(": Infinity", ": null");
    serde_json::from_str(&line)
}

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn group_of(name: &str) -> String {
    name.split('_').nth(1).unwrap_or("?").to_string()
}

/// The file-level split: within each group, in name order, files alternate A, B, A, B, …
pub fn split_halves(names: &[String]) -> Vec<(String, &'static str)> {
    let mut sorted = names.to_vec();
    sorted.sort();
    let mut seen: BTreeMap<String, usize> = BTreeMap::new();
    sorted
        .into_iter()
        .map(|n| {
            let k = seen.entry(group_of(&n)).or_default();
            let half = if k.is_multiple_of(2) { "A" } else { "B" };
            *k += 1;
            (n, half)
        })
        .collect()
}

/// The default fit options with `patch` (a JSON object) merged over them, key by key.
pub fn patched_options(patch: Option<&str>) -> Result<FitOptions> {
    let Some(patch) = patch else { return Ok(FitOptions::default()) };
    let patch: serde_json::Value = serde_json::from_str(patch).context("--options: not JSON")?;
    if !patch.is_object() {
        bail!("--options: expected a JSON object, e.g. '{{\"smooth\": 50}}'");
    }
    let mut base = serde_json::to_value(FitOptions::default())?;
    merge(&mut base, &patch, "")?;
    serde_json::from_value(base).context("--options")
}

fn merge(base: &mut serde_json::Value, patch: &serde_json::Value, at: &str) -> Result<()> {
    let (Some(b), Some(p)) = (base.as_object_mut(), patch.as_object()) else {
        *base = patch.clone();
        return Ok(());
    };
    for (k, v) in p {
        let path = if at.is_empty() { k.clone() } else { format!("{at}.{k}") };
        match b.get_mut(k) {
            Some(slot) if slot.is_object() && v.is_object() => merge(slot, v, &path)?,
            Some(slot) => *slot = v.clone(),
            None => bail!("--options: unknown field {path:?}"),
        }
    }
    Ok(())
}

fn list_files(args: &DetectBenchArgs) -> Result<Vec<String>> {
    if args.panel == "all" {
        let mut names = Vec::new();
        for e in std::fs::read_dir(&args.data_dir).with_context(|| format!("reading {}", args.data_dir.display()))? {
            let name = e?.file_name().to_string_lossy().to_string();
            if name.ends_with(".csv") {
                names.push(name);
            }
        }
        names.sort();
        return Ok(names);
    }
    Ok(std::fs::read_to_string(&args.panel)
        .with_context(|| format!("reading panel list {}", args.panel))?
        .lines()
        .map(|l| l.trim().to_string())
        .filter(|l| !l.is_empty())
        .collect())
}

pub fn run(args: &DetectBenchArgs) -> Result<()> {
    let all = list_files(args)?;
    let chosen: Vec<(String, &'static str)> = split_halves(&all)
        .into_iter()
        .filter(|(_, h)| match args.half {
            Half::Both => true,
            Half::A => *h == "A",
            Half::B => *h == "B",
        })
        .take(args.limit.unwrap_or(usize::MAX))
        .collect();
    if chosen.is_empty() {
        bail!("{}: no files", args.panel);
    }
    let peers = load_peers(&args.peers)?;
    let mut opts = patched_options(args.options.as_deref())?;
    opts.train.seed = args.seed;
    if args.stride > 0 {
        opts.score_stride = args.stride;
    }
    let bar = indicatif::ProgressBar::new(chosen.len() as u64);
    let mut results = Vec::new();
    let mut jsonl = String::new();
    for (name, half) in &chosen {
        bar.set_message(name.clone());
        let path = args.data_dir.join(name);
        let t0 = Instant::now();
        let mut series = read_csv(&path, &CsvOptions::default())?;
        if args.protocol == Protocol::Whole {
            series.train_end = series.n_rows;
        }
        let detector = Detector::fit(&series, &opts, &mut |_| {}).with_context(|| format!("training on {name}"))?;
        let detection = detector.detect(&series, None)?;
        let seconds = t0.elapsed().as_secs_f64();
        let labels = series.labels.as_ref().with_context(|| format!("{name}: no labels"))?;
        if let Some(dir) = &args.scores_dir {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let text: String = detection.score.iter().map(|s| format!("{s}\n")).collect();
            let out = dir.join(format!("{}.score.txt", name.trim_end_matches(".csv")));
            std::fs::write(&out, text).with_context(|| format!("writing {}", out.display()))?;
        }
        let window = estimated_window(&series);
        let suite = lara_metrics::evaluate(labels, &detection.score, window)?;
        let metrics = suite.named().iter().map(|(k, v)| (k.to_string(), *v)).collect();
        // Alarm quality on the rows the model did not train on (all rows in the whole protocol).
        let from = if args.protocol == Protocol::Prefix { series.train_end.min(series.n_rows) } else { 0 };
        let alarms = alarm_quality(&labels[from..], &detection.is_anomaly[from..], window / 2);
        let r = FileResult {
            file: name.clone(),
            group: group_of(name),
            half,
            rows: series.n_rows,
            columns: series.n_cols(),
            train_rows: detector.meta.train_rows,
            sliding_window: window,
            seconds,
            threshold: detection.threshold,
            alarm_rate: detection.is_anomaly.iter().filter(|&&a| a).count() as f64 / series.n_rows as f64,
            metrics,
            alarms,
        };
        jsonl.push_str(&serde_json::to_string(&r)?);
        jsonl.push('\n');
        if let Some(p) = &args.jsonl {
            // Written as it goes: a long run that is stopped keeps what it measured.
            std::fs::write(p, &jsonl).with_context(|| format!("writing {}", p.display()))?;
        }
        results.push(r);
        bar.inc(1);
    }
    bar.finish_and_clear();
    let peak = peak_rss_mib();
    let micro = if args.no_micro { None } else { Some(micro_benchmarks()) };
    match args.format {
        OutputFormat::Json => {
            let out = serde_json::json!({
                "protocol": args.protocol,
                "options": opts,
                "files": results,
                "groups": group_summary(&results, &peers, args.protocol),
                "peak_rss_mib": peak,
                "micro": micro,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        OutputFormat::Table => print_tables(&results, &peers, args.protocol, peak, micro.as_ref()),
    }
    Ok(())
}

#[derive(Serialize)]
struct GroupRow {
    group: String,
    /// "A", "B" or "A+B".
    half: String,
    method: String,
    files: usize,
    means: BTreeMap<String, f64>,
    seconds: f64,
    peak_rss_mb: Option<f64>,
}

/// Mean of the defined values (NaN when none is).
fn mean_of(v: impl Iterator<Item = Option<f64>>) -> f64 {
    let (s, n) = v.flatten().fold((0.0, 0usize), |(s, n), x| (s + x, n + 1));
    if n == 0 {
        f64::NAN
    } else {
        s / n as f64
    }
}

fn lara_row(group: &str, half: &str, rs: &[&FileResult]) -> GroupRow {
    let mut means: BTreeMap<String, f64> =
        METRICS.iter().map(|k| (k.to_string(), mean_of(rs.iter().map(|r| r.metrics[*k])))).collect();
    means.insert("event-precision".into(), mean_of(rs.iter().map(|r| r.alarms.event_precision)));
    means.insert("event-recall".into(), mean_of(rs.iter().map(|r| r.alarms.event_recall)));
    means.insert("normal-alarm-rate".into(), mean_of(rs.iter().map(|r| r.alarms.normal_alarm_rate)));
    GroupRow {
        group: group.to_string(),
        half: half.to_string(),
        method: "lara".into(),
        files: rs.len(),
        means,
        seconds: rs.iter().map(|r| r.seconds).sum::<f64>() / rs.len() as f64,
        peak_rss_mb: None,
    }
}

/// Per group and half: lara's means, then each peer of the protocol's on the same files.
fn group_summary(results: &[FileResult], peers: &PeerResults, protocol: Protocol) -> Vec<GroupRow> {
    let mut groups: BTreeMap<&str, Vec<&FileResult>> = BTreeMap::new();
    for r in results {
        groups.entry(r.group.as_str()).or_default().push(r);
    }
    let mut rows = Vec::new();
    for (g, rs) in groups {
        let both_halves = rs.iter().any(|r| r.half == "A") && rs.iter().any(|r| r.half == "B");
        for half in ["A", "B", "A+B"] {
            let sel: Vec<&FileResult> = rs.iter().copied().filter(|r| half == "A+B" || r.half == half).collect();
            // Skip an empty half, and "A+B" when only one half ran (it would repeat it).
            if sel.is_empty() || (half == "A+B" && !both_halves) {
                continue;
            }
            rows.push(lara_row(g, half, &sel));
            for &m in peers_of(protocol) {
                let Some(p) = peers.get(m) else { continue };
                let got: Vec<&serde_json::Value> = sel.iter().filter_map(|r| p.get(&r.file)).collect();
                if got.is_empty() {
                    continue;
                }
                // Over the files where the metric is defined (NaN when it is nowhere).
                let mean = |key: &str| {
                    let vals: Vec<f64> = got.iter().filter_map(|v| v[key].as_f64()).collect();
                    vals.iter().sum::<f64>() / vals.len() as f64
                };
                rows.push(GroupRow {
                    group: g.to_string(),
                    half: half.to_string(),
                    method: m.to_string(),
                    files: got.len(),
                    means: METRICS.iter().map(|key| (key.to_string(), mean(key))).collect(),
                    seconds: mean("seconds"),
                    peak_rss_mb: got.iter().filter_map(|v| v["peak_rss_mb"].as_f64()).reduce(f64::max),
                });
            }
        }
    }
    rows
}

fn pct(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else {
        format!("{:.1}", 100.0 * v)
    }
}

fn print_tables(
    results: &[FileResult],
    peers: &PeerResults,
    protocol: Protocol,
    peak: Option<f64>,
    micro: Option<&Micro>,
) {
    let omni = peers.get("OmniAnomaly");
    let rows: Vec<Vec<String>> = results
        .iter()
        .map(|r| {
            let o = omni.and_then(|p| p.get(&r.file)).and_then(|v| v["seconds"].as_f64());
            vec![
                r.file.clone(),
                r.half.to_string(),
                fmt3(r.metrics["VUS-PR"]),
                fmt3(r.metrics["AUC-PR"]),
                fmt3(r.metrics["PA-F1"]),
                fmt3(r.metrics["Affiliation-F"]),
                fmt3(r.alarms.event_precision),
                fmt3(r.alarms.event_recall),
                r.alarms.normal_alarm_rate.map(pct).unwrap_or_else(|| "n/a".into()),
                format!("{:.2}", r.seconds),
                o.map(|o| format!("{:.1}", o / r.seconds)).unwrap_or_else(|| "-".into()),
            ]
        })
        .collect();
    print!(
        "{}",
        table(
            &["file", "half", "VUS-PR", "AUC-PR", "PA-F1", "Aff-F", "ev-P", "ev-R", "normal-alarm%", "sec", "omni×"],
            &rows
        )
    );
    println!();
    let groups = group_summary(results, peers, protocol);
    let rows: Vec<Vec<String>> = groups
        .iter()
        .map(|g| {
            let mut row = vec![g.group.clone(), g.half.clone(), g.method.clone(), g.files.to_string()];
            row.extend(METRICS.iter().map(|k| format!("{:.3}", g.means[*k])));
            for k in ["event-precision", "event-recall"] {
                row.push(g.means.get(k).map(|v| if v.is_nan() { "n/a".into() } else { format!("{v:.3}") }).unwrap_or_else(|| "-".into()));
            }
            row.push(g.means.get("normal-alarm-rate").map(|&v| pct(v)).unwrap_or_else(|| "-".into()));
            row.push(format!("{:.2}", g.seconds));
            row
        })
        .collect();
    let mut header = vec!["group", "half", "method", "files"];
    header.extend(METRICS);
    header.extend(["ev-P", "ev-R", "normal-alarm%", "sec/file"]);
    print!("{}", table(&header, &rows));
    println!();
    // Targets, each on exactly the files the peer has: prefix protocol — VUS-PR ≥ every peer
    // fitted on the prefix (the deep ones, PCA-prefix, IForest-prefix); whole protocol — ≥
    // IForest and ≥ PCA (their own protocol); both — train+score ≥ 10× faster than OmniAnomaly.
    println!("targets ({} protocol; lara averaged over the files each peer has):", protocol_name(protocol));
    let mut target_rows = Vec::new();
    let mut by_group: BTreeMap<&str, Vec<&FileResult>> = BTreeMap::new();
    for r in results {
        by_group.entry(r.group.as_str()).or_default().push(r);
    }
    let yes = |ok: bool| if ok { "yes" } else { "NO" }.to_string();
    for (g, rs) in by_group {
        let compare = |m: &str, key: &str| -> Option<(f64, f64, usize)> {
            let p = peers.get(m)?;
            let pairs: Vec<(f64, f64)> = rs
                .iter()
                .filter_map(|r| {
                    let v = p.get(&r.file)?[key].as_f64()?;
                    let ours = if key == "seconds" { Some(r.seconds) } else { r.metrics[key] }?;
                    Some((ours, v))
                })
                .collect();
            if pairs.is_empty() {
                return None;
            }
            let n = pairs.len() as f64;
            Some((pairs.iter().map(|p| p.0).sum::<f64>() / n, pairs.iter().map(|p| p.1).sum::<f64>() / n, pairs.len()))
        };
        for &m in peers_of(protocol) {
            if let Some((ours, theirs, n)) = compare(m, "VUS-PR") {
                target_rows.push(vec![
                    g.to_string(),
                    format!("VUS-PR vs {m}"),
                    n.to_string(),
                    format!("{ours:.3}"),
                    format!("{theirs:.3}"),
                    yes(ours >= theirs),
                ]);
            }
        }
        if let Some((ours, theirs, n)) = compare("OmniAnomaly", "seconds") {
            target_rows.push(vec![
                g.to_string(),
                "seconds vs OmniAnomaly (≥ 10× faster)".into(),
                n.to_string(),
                format!("{ours:.2}"),
                format!("{theirs:.2} ({:.1}×)", theirs / ours),
                yes(ours * 10.0 <= theirs),
            ]);
        }
    }
    print!("{}", table(&["group", "target", "files", "lara", "peer", "met"], &target_rows));
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

fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Prefix => "prefix",
        Protocol::Whole => "whole-series",
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
                    let s = score_rows(&vae, &values, rows, stride, ScoreKind::Nll, None);
                    assert_eq!(s.score.len(), rows);
                    t.elapsed().as_secs_f64()
                })
                .fold(f64::INFINITY, f64::min);
            (stride, rows as f64 / best)
        })
        .collect();
    Micro { threads: lara_vae::threads(), adam_step_ms, scoring }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_merge_over_directories_and_lines_without_metrics_are_skipped() {
        let root = std::env::temp_dir().join(format!("lara-peers-{}", std::process::id()));
        let (a, b) = (root.join("shared"), root.join("repo"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();
        let line = |f: &str, v: f64| format!("{{\"file\": \"{f}\", \"VUS-PR\": {v}, \"seconds\": 1.0}}\n");
        std::fs::write(a.join("dev_USAD.jsonl"), line("x.csv", 0.1) + &line("y.csv", 0.2)).unwrap();
        std::fs::write(b.join("dev_all_USAD.jsonl"), line("y.csv", 0.3) + &line("z.csv", 0.4) + "{\"file\": \"e.csv\", \"error\": \"x\"}\n").unwrap();
        let p = load_peers(&[a.clone(), root.join("missing"), b.clone()]).unwrap();
        let u = &p["USAD"];
        let got: Vec<(&str, f64)> = u.iter().map(|(k, v)| (k.as_str(), v["VUS-PR"].as_f64().unwrap())).collect();
        assert_eq!(got, vec![("x.csv", 0.1), ("y.csv", 0.3), ("z.csv", 0.4)]);
        assert!(!p.contains_key("Donut"));
        // `-prefix` peers come from prefix_<method>.jsonl, apart from TSB-AD's protocol.
        std::fs::write(b.join("prefix_PCA.jsonl"), line("x.csv", 0.7) + "{\"file\": \"n.csv\", \"VUS-PR\": 0.1, \"Affiliation-F\": NaN}\n").unwrap();
        std::fs::write(b.join("dev_all_PCA.jsonl"), line("x.csv", 0.5)).unwrap();
        let p = load_peers(&[b.clone()]).unwrap();
        assert_eq!(p["PCA-prefix"]["x.csv"]["VUS-PR"], 0.7);
        assert!(p["PCA-prefix"]["n.csv"]["Affiliation-F"].is_null());
        assert_eq!(p["PCA"]["x.csv"]["VUS-PR"], 0.5);
        std::fs::write(b.join("dev_all_USAD.jsonl"), "{not json\n").unwrap();
        let e = format!("{:#}", load_peers(&[b]).unwrap_err());
        assert!(e.contains("dev_all_USAD.jsonl: line 1"), "{e}");
        let _ = std::fs::remove_dir_all(&root);
    }

    #[test]
    fn halves_alternate_within_each_group() {
        let names: Vec<String> =
            ["003_SMAP_c", "001_SMAP_a", "042_MSL_a", "002_SMAP_b", "043_MSL_b", "044_MSL_c", "062_NAB_a"]
                .iter()
                .map(|s| s.to_string())
                .collect();
        let got: Vec<(String, &str)> = split_halves(&names);
        let half = |n: &str| got.iter().find(|(m, _)| m == n).unwrap().1;
        assert_eq!(
            [half("001_SMAP_a"), half("002_SMAP_b"), half("003_SMAP_c")],
            ["A", "B", "A"],
            "in name order within the group"
        );
        // Each group starts at A, whatever the file numbers.
        assert_eq!([half("042_MSL_a"), half("043_MSL_b"), half("044_MSL_c")], ["A", "B", "A"]);
        assert_eq!(half("062_NAB_a"), "A");
    }

    #[test]
    fn options_merge_over_defaults_and_refuse_unknown_fields() {
        let o = patched_options(Some(r#"{"smooth": 50, "train": {"hidden": 64}}"#)).unwrap();
        assert_eq!(o.smooth, Some(50));
        assert_eq!(o.train.hidden, 64);
        assert_eq!(o.train.latent, FitOptions::default().train.latent, "untouched fields keep their default");
        let err = patched_options(Some(r#"{"train": {"hiden": 64}}"#)).unwrap_err().to_string();
        assert!(err.contains("train.hiden"), "{err}");
        assert!(patched_options(Some("[1]")).is_err());
        assert_eq!(patched_options(None).unwrap(), FitOptions::default());
    }
}
