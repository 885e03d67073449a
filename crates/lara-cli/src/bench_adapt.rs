//! `lara bench adapt`: a normal-pattern change, measured. LARA against no adaptation,
//! fine-tuning all VAE weights, training from scratch on the same K rows, and a full retrain
//! on the new entity's whole training prefix (the upper bound).

use crate::adapt_cmds::head;
use crate::alloc_meter::measure_peak;
use crate::eval::{estimated_window, OutputFormat};
use crate::report::{mean, median, table};
use anyhow::{bail, Context, Result};
use clap::Args;
use lara_adapt::AdaptConfig;
use lara_core::{read_csv, CsvOptions, Series};
use lara_vae::{Detector, FitOptions};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Shown after the options in `--help`.
const BENCH_ADAPT_HELP: &str = "\
Scenario \"cross-entity\": entities with the same columns are paired (SMAP↔SMAP, MSL↔MSL,
NAB↔NAB within a domain, consecutive files in name order). The base model is trained on A's
training prefix (the old pattern); the pattern then changes to B. Each method gets the first
K rows of B's training prefix; every model scores all of B and VUS-PR / PA-F1 are computed on
B's rows after its training prefix (TSB-AD window of B).
Scenario \"shift\": one series per group; its continuation after the training prefix is
transformed (level +1.5 σ, scale ×1.5, each column mixed 20 % with the next); the base model
is trained on the untransformed prefix; methods get the first K transformed rows; metrics on
the transformed continuation; the full retrain trains on the transformed prefix.

Methods: none (base model), lara (ruminate + convex fit of M_z, M_x), finetune (all VAE
weights, same optimiser settings, from the base weights), scratch (a new model on the K rows),
full (a new model on the whole new training prefix). A method that needs more rows than K
(one window for lara, window + 1 for training) is reported as n/a. Times: wall time of the
adaptation / training alone; memory: peak heap bytes allocated during it.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_ADAPT_HELP)]
pub struct AdaptBenchArgs {
    /// Directory of TSB-AD CSV files.
    #[arg(long, value_name = "DIR", default_value = "../shared/data/tsbad")]
    pub data_dir: PathBuf,
    /// Numbers of new-pattern rows to adapt on.
    #[arg(long, value_name = "K,K,..", value_delimiter = ',', default_value = "10,20,40,100")]
    pub slots: Vec<usize>,
    /// Window of the models in this benchmark (LARA needs K ≥ window, training K ≥ window + 1).
    #[arg(long, default_value_t = 20)]
    pub window: usize,
    /// Pairs per group in the cross-entity scenario.
    #[arg(long, default_value_t = 2)]
    pub pairs: usize,
    /// Scenarios to run.
    #[arg(long, value_delimiter = ',', default_value = "cross-entity,shift")]
    pub scenarios: Vec<String>,
    /// Training seed.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// LARA settings to run instead of the defaults: a JSON object of `AdaptConfig` fields
    /// merged over the defaults, e.g. '{"z_target":"ruminate","variance_prior_rows":null}'
    /// (the paper-literal variant) or '{"ridge_x":{"pseudo_rows":8.0,"per_dim":true,"penalise_bias":false}}'.
    #[arg(long, value_name = "JSON")]
    pub lara_config: Option<String>,
    /// Also write one JSON line per (pair, method, K) here.
    #[arg(long, value_name = "OUT.jsonl")]
    pub jsonl: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

#[derive(Serialize, Clone, Debug)]
struct Outcome {
    scenario: String,
    pair: String,
    method: String,
    k: Option<usize>,
    vus_pr: Option<f64>,
    pa_f1: Option<f64>,
    seconds: Option<f64>,
    peak_heap_bytes: Option<usize>,
    /// LARA only: parameter bytes of the adapter (`4·(d_z² + d_z + m² + m)`).
    adapter_bytes: Option<usize>,
    note: Option<String>,
}

/// One change: the model of the old pattern is trained on `old`; lara / finetune / scratch
/// get the first K rows of `adapt_source`; the full retrain trains on `full_train`;
/// everything is scored on `eval` and measured on rows `[eval_from, ..)`.
struct Case {
    scenario: &'static str,
    name: String,
    old: Series,
    adapt_source: Series,
    full_train: Series,
    eval: Series,
    eval_from: usize,
}

fn fit_options(window: usize, seed: u64) -> FitOptions {
    let mut o = FitOptions { window, ..FitOptions::default() };
    o.train.seed = seed;
    o
}

fn evaluate(det: &Detector, case: &Case) -> Result<(Option<f64>, Option<f64>)> {
    let d = det.detect(&case.eval, None)?;
    let labels = case.eval.labels.as_ref().context("evaluation data has labels")?;
    let window = estimated_window(&case.eval);
    let (l, s) = (&labels[case.eval_from..], &d.score[case.eval_from..]);
    if !l.contains(&1) {
        return Ok((None, None));
    }
    let m = lara_metrics::evaluate(l, s, window)?;
    Ok((m.vus_pr, m.pa_f1))
}

/// `AdaptConfig::default()` with the fields of `--lara-config` replaced.
fn lara_config(args: &AdaptBenchArgs) -> Result<AdaptConfig> {
    let Some(text) = &args.lara_config else { return Ok(AdaptConfig::default()) };
    let over: serde_json::Value = serde_json::from_str(text).context("--lara-config is not JSON")?;
    let serde_json::Value::Object(over) = over else { bail!("--lara-config must be a JSON object") };
    let mut cfg = serde_json::to_value(AdaptConfig::default())?;
    for (k, v) in over {
        let slot = cfg.get_mut(&k).with_context(|| format!("--lara-config: unknown field {k:?}"))?;
        *slot = v;
    }
    let cfg: AdaptConfig = serde_json::from_value(cfg).context("--lara-config")?;
    cfg.validate().map_err(|e| anyhow::anyhow!("--lara-config: {e}"))?;
    Ok(cfg)
}

fn run_case(case: &Case, args: &AdaptBenchArgs, out: &mut Vec<Outcome>) -> Result<()> {
    let opts = fit_options(args.window, args.seed);
    let lara_cfg = lara_config(args)?;
    let mut push = |method: &str, k: Option<usize>, res: Result<(Detector, f64, usize)>| -> Result<()> {
        let o = match res {
            Ok((det, secs, peak)) => {
                let (vus_pr, pa_f1) = evaluate(&det, case)?;
                Outcome {
                    scenario: case.scenario.into(),
                    pair: case.name.clone(),
                    method: method.into(),
                    k,
                    vus_pr,
                    pa_f1,
                    seconds: Some(secs),
                    peak_heap_bytes: Some(peak),
                    adapter_bytes: det.meta.adaptation.as_ref().map(|a| a.adapter.param_bytes()),
                    note: None,
                }
            }
            Err(e) => Outcome {
                scenario: case.scenario.into(),
                pair: case.name.clone(),
                method: method.into(),
                k,
                vus_pr: None,
                pa_f1: None,
                seconds: None,
                peak_heap_bytes: None,
                adapter_bytes: None,
                note: Some(format!("{e:#}")),
            },
        };
        out.push(o);
        Ok(())
    };
    let timed = |f: &dyn Fn() -> Result<Detector>| -> Result<(Detector, f64, usize)> {
        let t0 = Instant::now();
        let (det, peak) = measure_peak(f);
        Ok((det?, t0.elapsed().as_secs_f64(), peak))
    };
    let base = Detector::fit(&case.old, &opts, &mut |_| {}).with_context(|| format!("{}: base model", case.name))?;
    push("none", None, Ok((base.clone(), 0.0, 0)))?;
    push("full", None, timed(&|| Ok(Detector::fit(&case.full_train, &opts, &mut |_| {})?)))?;
    for &k in &args.slots {
        if k > case.adapt_source.n_rows {
            continue;
        }
        let rows = head(&case.adapt_source, k);
        push("lara", Some(k), timed(&|| Ok(base.adapt(&rows, &lara_cfg, None)?.0)))?;
        push("finetune", Some(k), timed(&|| Ok(base.fine_tune(&rows, &opts.train)?)))?;
        let scratch_rows = Series { train_end: k, ..rows.clone() };
        push("scratch", Some(k), timed(&|| Ok(Detector::fit(&scratch_rows, &opts, &mut |_| {})?)))?;
    }
    Ok(())
}

fn read(path: &Path) -> Result<Series> {
    read_csv(path, &CsvOptions::default()).with_context(|| format!("reading {}", path.display()))
}

/// Group key of a TSB-AD file name: dataset, plus the domain for NAB.
fn group_of(name: &str) -> String {
    let parts: Vec<&str> = name.split('_').collect();
    match parts.get(1) {
        Some(&"NAB") => format!("NAB-{}", parts.get(4).unwrap_or(&"?")),
        Some(d) => d.to_string(),
        None => "?".into(),
    }
}

fn list_groups(dir: &Path) -> Result<BTreeMap<String, Vec<PathBuf>>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .with_context(|| format!("reading directory {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "csv"))
        .collect();
    files.sort();
    let mut groups: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for f in files {
        let name = f.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        if name.contains("_1st_-1") {
            continue; // no anomaly: nothing to measure
        }
        let g = group_of(&name);
        if g != "UCR" {
            groups.entry(g).or_default().push(f);
        }
    }
    Ok(groups)
}

fn cross_entity_cases(args: &AdaptBenchArgs) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (_, files) in list_groups(&args.data_dir)? {
        for pair in files.chunks_exact(2).take(args.pairs) {
            let (a, b) = (read(&pair[0])?, read(&pair[1])?);
            if a.columns != b.columns {
                continue;
            }
            let name =
                |p: &Path| p.file_name().map(|n| n.to_string_lossy().split("_tr_").next().unwrap_or("").to_string());
            let new_train = head(&b, b.train_end);
            cases.push(Case {
                scenario: "cross-entity",
                name: format!("{} -> {}", name(&pair[0]).unwrap_or_default(), name(&pair[1]).unwrap_or_default()),
                old: head(&a, a.train_end),
                adapt_source: new_train.clone(),
                full_train: new_train,
                eval_from: b.train_end,
                eval: b,
            });
        }
    }
    Ok(cases)
}

/// The shift transform: per column level +1.5 σ and scale ×1.5 (σ of the training prefix),
/// then each column mixed 20 % with the next one (cyclically).
fn shift_rows(values: &[f32], m: usize, sigma: &[f32]) -> Vec<f32> {
    let mut out = vec![0.0; values.len()];
    for (src, dst) in values.chunks_exact(m).zip(out.chunks_exact_mut(m)) {
        let moved: Vec<f32> = (0..m).map(|j| 1.5 * src[j] + 1.5 * sigma[j]).collect();
        for j in 0..m {
            dst[j] = if m > 1 { 0.8 * moved[j] + 0.2 * moved[(j + 1) % m] } else { moved[j] };
        }
    }
    out
}

fn shift_cases(args: &AdaptBenchArgs) -> Result<Vec<Case>> {
    let mut cases = Vec::new();
    for (group, files) in list_groups(&args.data_dir)? {
        let Some(path) = files.first() else { continue };
        let s = read(path)?;
        let (m, te) = (s.n_cols(), s.train_end);
        let sigma: Vec<f32> = (0..m)
            .map(|j| {
                let col: Vec<f64> = s.column(j)[..te].iter().map(|&v| v as f64).collect();
                let mean = col.iter().sum::<f64>() / te as f64;
                let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / te as f64;
                if var > 0.0 {
                    var.sqrt() as f32
                } else {
                    1.0
                }
            })
            .collect();
        let mut eval = s.clone();
        let moved = shift_rows(&s.values[te * m..], m, &sigma);
        eval.values[te * m..].copy_from_slice(&moved);
        let k_max = args.slots.iter().copied().max().unwrap_or(0).min(s.n_rows - te);
        let name = path.file_name().map(|n| n.to_string_lossy().split("_tr_").next().unwrap_or("").to_string());
        cases.push(Case {
            scenario: "shift",
            name: format!("{} ({group})", name.unwrap_or_default()),
            old: head(&s, te),
            adapt_source: Series { values: moved[..k_max * m].to_vec(), ..head(&s, k_max) },
            full_train: Series { values: shift_rows(&s.values[..te * m], m, &sigma), ..head(&s, te) },
            eval,
            eval_from: te,
        });
    }
    Ok(cases)
}

pub fn run(args: &AdaptBenchArgs) -> Result<()> {
    if args.slots.is_empty() {
        bail!("--slots needs at least one value");
    }
    let mut cases = Vec::new();
    for sc in &args.scenarios {
        match sc.as_str() {
            "cross-entity" => cases.extend(cross_entity_cases(args)?),
            "shift" => cases.extend(shift_cases(args)?),
            other => bail!("unknown scenario {other:?} (expected cross-entity or shift)"),
        }
    }
    if cases.is_empty() {
        bail!("no cases in {}", args.data_dir.display());
    }
    let bar = indicatif::ProgressBar::new(cases.len() as u64);
    let mut outcomes = Vec::new();
    for case in &cases {
        bar.set_message(case.name.clone());
        run_case(case, args, &mut outcomes)?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    if let Some(p) = &args.jsonl {
        let text: String =
            outcomes.iter().map(|o| serde_json::to_string(o).map(|l| l + "\n")).collect::<Result<_, _>>()?;
        std::fs::write(p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    let summary = summarise(&outcomes);
    match args.format {
        OutputFormat::Json => {
            println!("{}", serde_json::to_string_pretty(&serde_json::json!({"summary": summary, "runs": outcomes}))?)
        }
        OutputFormat::Table => print_summary(&summary, &outcomes, args),
    }
    Ok(())
}

#[derive(Serialize)]
struct SummaryRow {
    scenario: String,
    method: String,
    k: Option<usize>,
    cases: usize,
    not_applicable: usize,
    vus_pr: Option<f64>,
    pa_f1: Option<f64>,
    median_seconds: Option<f64>,
    max_peak_heap_bytes: Option<usize>,
}

fn summarise(outcomes: &[Outcome]) -> Vec<SummaryRow> {
    let mut keys: Vec<(String, String, Option<usize>)> = Vec::new();
    for o in outcomes {
        let k = (o.scenario.clone(), o.method.clone(), o.k);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    keys.into_iter()
        .map(|(scenario, method, k)| {
            let rows: Vec<&Outcome> =
                outcomes.iter().filter(|o| o.scenario == scenario && o.method == method && o.k == k).collect();
            let ok: Vec<&&Outcome> = rows.iter().filter(|o| o.note.is_none()).collect();
            SummaryRow {
                cases: rows.len(),
                not_applicable: rows.len() - ok.len(),
                vus_pr: mean(ok.iter().filter_map(|o| o.vus_pr)),
                pa_f1: mean(ok.iter().filter_map(|o| o.pa_f1)),
                median_seconds: median(ok.iter().filter_map(|o| o.seconds).collect()),
                max_peak_heap_bytes: ok.iter().filter_map(|o| o.peak_heap_bytes).max(),
                scenario,
                method,
                k,
            }
        })
        .collect()
}

fn print_summary(summary: &[SummaryRow], outcomes: &[Outcome], args: &AdaptBenchArgs) {
    let f = |v: Option<f64>| v.map(|x| format!("{x:.3}")).unwrap_or_else(|| "n/a".into());
    let rows: Vec<Vec<String>> = summary
        .iter()
        .map(|r| {
            vec![
                r.scenario.clone(),
                r.method.clone(),
                r.k.map(|k| k.to_string()).unwrap_or_else(|| "-".into()),
                format!("{}/{}", r.cases - r.not_applicable, r.cases),
                f(r.vus_pr),
                f(r.pa_f1),
                r.median_seconds.map(|s| format!("{:.1}", s * 1e3)).unwrap_or_else(|| "n/a".into()),
                r.max_peak_heap_bytes.map(|b| format!("{:.1}", b as f64 / 1024.0)).unwrap_or_else(|| "n/a".into()),
            ]
        })
        .collect();
    print!("{}", table(&["scenario", "method", "K", "cases", "VUS-PR", "PA-F1", "median_ms", "peak_heap_KiB"], &rows));
    let notes: Vec<&Outcome> = outcomes.iter().filter(|o| o.note.is_some()).collect();
    if let Some(o) = notes.first() {
        println!(
            "\nn/a: {} runs could not be made with so few rows, e.g. {} K={:?} on {}: {}",
            notes.len(),
            o.method,
            o.k,
            o.pair,
            o.note.as_deref().unwrap_or("")
        );
    }
    println!("\nTargets at K=40 (window {}):", args.window);
    for sc in ["cross-entity", "shift"] {
        let get = |m: &str, k: Option<usize>| summary.iter().find(|r| r.scenario == sc && r.method == m && r.k == k);
        let (Some(lara), Some(full)) = (get("lara", Some(40)), get("full", None)) else { continue };
        let v = |r: Option<&SummaryRow>| r.and_then(|r| r.vus_pr);
        let ratio = v(Some(lara)).zip(v(Some(full))).map(|(a, b)| a / b);
        let beats = |m: &str, k| match (v(Some(lara)), v(get(m, k))) {
            (Some(a), Some(b)) => if a > b { "yes" } else { "NO" }.to_string(),
            _ => "n/a".into(),
        };
        let speed = lara.median_seconds.zip(full.median_seconds).map(|(a, b)| b / a);
        let adapter = outcomes.iter().filter(|o| o.scenario == sc).filter_map(|o| o.adapter_bytes).max();
        println!(
            "  {sc}: LARA/full VUS-PR {} (target ≥ 0.90); LARA > none {}, > finetune {}, > scratch {}; \
             LARA median {} ms (target < 20); {} faster than the full retrain (target ≥ 100×); adapter {} (target < 64 KiB)",
            ratio.map(|r| format!("{r:.2}")).unwrap_or_else(|| "n/a".into()),
            beats("none", None),
            beats("finetune", Some(40)),
            beats("scratch", Some(40)),
            lara.median_seconds.map(|s| format!("{:.1}", s * 1e3)).unwrap_or_else(|| "n/a".into()),
            speed.map(|x| format!("{x:.0}×")).unwrap_or_else(|| "n/a".into()),
            adapter.map(|b| format!("{:.1} KiB", b as f64 / 1024.0)).unwrap_or_else(|| "n/a".into()),
        );
    }
}
