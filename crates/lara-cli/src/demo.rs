//! `lara demo`: the main job end to end on a bundled public series.

use crate::bench::difference_score;
use crate::eval::estimated_window;
use crate::plot::{write_detection_plot, DetectionPlot};
use crate::report::{fmt3, fmt_opt, table};
use crate::vae_cmds::{training_progress, write_detection_csv};
use anyhow::{Context, Result};
use clap::Args;
use lara_core::{read_csv_bytes, CsvOptions};
use lara_stream::Policy;
use lara_vae::{Detector, FitOptions};

use crate::replay_cmds::{monitor_config, replay, write_events, write_replay_plot, write_scores_csv};
use std::path::PathBuf;
use std::time::Instant;

/// The bundled series (NAB `ec2_cpu_utilization_24ae8d`, MIT; see data/demo/README.md).
pub const DEMO_NAME: &str = "nab_ec2_cpu_utilization_24ae8d_tr_604_1st_3447.csv";
pub const DEMO_CSV: &[u8] = include_bytes!("../../../data/demo/nab_ec2_cpu_utilization_24ae8d_tr_604_1st_3447.csv");

/// The bundled series whose normal pattern changes (NAB `rds_cpu_utilization_e47b3b`, MIT;
/// see data/demo/README-shift.md).
pub const SHIFT_NAME: &str = "nab_rds_cpu_utilization_e47b3b_tr_604_1st_846.csv";
pub const SHIFT_CSV: &[u8] = include_bytes!("../../../data/demo/nab_rds_cpu_utilization_e47b3b_tr_604_1st_846.csv");

/// Shown after the options in `--help`.
const DEMO_HELP: &str = "\
Runs on the bundled NAB series (AWS CloudWatch CPU utilisation of one EC2 instance, 4032
five-minute samples, MIT licence): trains the VAE detector on the first 604 rows (NAB's
probationary period), scores every row, sets the label-free threshold (POT, raised to a margin
over the training scores: the daily spike seen in training is not alarmed), evaluates
against NAB's anomaly windows with TSB-AD's metrics (beside a detector-free |Δx| baseline)
and writes to --out-dir: the data, the model, detections.csv and detections.png.

Then the online monitor (`lara replay`) on a second bundled NAB series whose normal pattern
changes twice (CPU of an RDS database: 13.7 % → 16.8 % → 28 % → back to 17 %; MIT): a static
model vs the monitor that adapts by LARA, row by row and causally; writes online.csv,
events.jsonl and online.png (orange lines: adaptations).";

#[derive(Args, Debug)]
#[command(after_help = DEMO_HELP)]
pub struct DemoArgs {
    /// Where to write the demo's files.
    #[arg(long, value_name = "DIR", default_value = "lara-demo")]
    pub out_dir: PathBuf,
    /// Random seed of the training.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let t0 = Instant::now();
    let series = read_csv_bytes(DEMO_NAME, DEMO_CSV, &CsvOptions::default())?;
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let data_path = args.out_dir.join(DEMO_NAME);
    std::fs::write(&data_path, DEMO_CSV).with_context(|| format!("writing {}", data_path.display()))?;
    println!(
        "series: {DEMO_NAME} — {} rows × {} column(s); training prefix {} rows",
        series.n_rows,
        series.n_cols(),
        series.train_end
    );

    let mut opts = FitOptions::default();
    opts.train.seed = args.seed;
    let (bar, mut progress) = training_progress();
    let detector = Detector::fit(&series, &opts, &mut progress).context("training the detector")?;
    bar.finish_and_clear();
    let model_path = args.out_dir.join("model.lara");
    detector.save(&model_path)?;
    let detection = detector.detect(&series, None)?;
    let csv_path = args.out_dir.join("detections.csv");
    write_detection_csv(&csv_path, &series, &detection)?;
    let alarms = detection.is_anomaly.iter().filter(|&&a| a).count();
    println!(
        "detector: window-{} VAE trained and scored in {:.2} s; threshold {:.3} ({}) → {} alarm rows",
        detector.meta.options.window,
        t0.elapsed().as_secs_f64(),
        detection.threshold,
        threshold_origin(&detector.meta.threshold),
        alarms
    );

    let labels = series.labels.as_ref().context("bundled series has labels")?;
    let window = estimated_window(&series);
    let ours = lara_metrics::evaluate(labels, &detection.score, window)?;
    let baseline = lara_metrics::evaluate(labels, &difference_score(&series), window)?;
    println!("evaluation against NAB's labels (TSB-AD metrics, window {window} = period estimate):");
    let rows: Vec<Vec<String>> = ours
        .named()
        .iter()
        .zip(baseline.named())
        .map(|((k, v), (_, b))| vec![k.to_string(), fmt_opt(*v), fmt_opt(b)])
        .collect();
    print!("{}", table(&["metric", "lara VAE", "|Δx| baseline"], &rows));

    let png_path = args.out_dir.join("detections.png");
    let mut plot = DetectionPlot::new(&series, &[0], &detection.score, &detection.is_anomaly);
    plot.title = format!("lara demo: {DEMO_NAME}");
    plot.subtitle = format!(
        "VAE detector (window {}) trained on the first {} rows; look-ahead scores; threshold {:.3} ({}): {alarms} alarms",
        detector.meta.options.window,
        series.train_end,
        detection.threshold,
        threshold_origin(&detector.meta.threshold)
    );
    plot.threshold = Some(detection.threshold);
    write_detection_plot(&png_path, &plot)?;
    println!("plot: {}", png_path.display());
    println!(
        "files in {}: the data, model.lara, detections.csv. Next:\n  lara detect --model {} --data {} --out scores.csv",
        args.out_dir.display(),
        model_path.display(),
        data_path.display()
    );
    online(args)
}

/// The second half of the demo: static vs online on a series whose normal pattern changes.
fn online(args: &DemoArgs) -> Result<()> {
    println!();
    let series = read_csv_bytes(SHIFT_NAME, SHIFT_CSV, &CsvOptions::default())?;
    let data_path = args.out_dir.join(SHIFT_NAME);
    std::fs::write(&data_path, SHIFT_CSV).with_context(|| format!("writing {}", data_path.display()))?;
    println!(
        "online: {SHIFT_NAME} — {} rows; the normal CPU level moves at rows 946 and 2585 and returns at ~3593;",
        series.n_rows
    );
    println!(
        "        warm-up on the first {} rows, then every row is pushed to the monitor one by one",
        series.train_end
    );
    let labels = series.labels.as_ref().context("bundled series has labels")?;
    let window = estimated_window(&series);
    let mut fit = FitOptions::default();
    fit.train.seed = args.seed;
    let mut rows = Vec::new();
    let mut online_run = None;
    for policy in [Policy::Static, Policy::Adapt] {
        let cfg = monitor_config(policy, 40, None, 1000);
        let r = replay(&series, None, cfg, fit.clone(), 1)?;
        let scores: Vec<f64> = r.results.iter().map(|s| s.score).collect();
        let m = lara_metrics::evaluate(labels, &scores, window)?;
        let after = series.train_end;
        let unlabelled: Vec<usize> = (after..series.n_rows).filter(|&t| labels[t] == 0).collect();
        let false_alarms = unlabelled.iter().filter(|&&t| r.results[t].is_anomaly).count();
        let segs = lara_metrics::runs(labels.iter().map(|&l| l == 1));
        let caught = segs.iter().filter(|&&(a, b)| r.results[a..=b].iter().any(|s| s.is_anomaly)).count();
        let count = |k: &str| r.events.iter().filter(|e| e.kind == k).count();
        rows.push(vec![
            if policy == Policy::Static { "static model".to_string() } else { "online (adapt)".to_string() },
            format!("{:.1} %", 100.0 * false_alarms as f64 / unlabelled.len().max(1) as f64),
            format!("{caught} of {}", segs.len()),
            format!("{}", count("adapt") + count("reselect")),
            fmt3(m.vus_pr),
            fmt3(m.auc_pr),
            format!("{:.0}", series.n_rows as f64 / r.seconds.max(1e-9)),
        ]);
        if policy == Policy::Adapt {
            online_run = Some(r);
        }
    }
    print!(
        "{}",
        table(
            &["", "alarms on unlabelled rows", "labelled windows alarmed", "adaptations", "VUS-PR", "AUC-PR", "rows/s"],
            &rows
        )
    );
    let r = online_run.expect("ran");
    for e in r.events.iter().filter(|e| e.kind != "suspect" && e.kind != "collect") {
        println!(
            "  row {:>5}: {:<9} {} (model version {}{})",
            e.row,
            e.kind,
            e.detail,
            e.model_version,
            match (e.nll_before, e.nll_after) {
                (Some(b), Some(a)) => format!(", mean NLL {b:.1} → {a:.1}"),
                _ => String::new(),
            }
        );
    }
    let csv = args.out_dir.join("online.csv");
    write_scores_csv(&csv, &series, &r.results)?;
    let ev = args.out_dir.join("events.jsonl");
    write_events(&ev, &r.events)?;
    let png = args.out_dir.join("online.png");
    let title = format!("lara demo (online): {SHIFT_NAME}");
    write_replay_plot(&png, &series, &r, &title, "adapt")?;
    println!("files: {}, {}, {}", csv.display(), ev.display(), png.display());
    println!("Next:\n  lara replay --data {} --out scores.csv --events events.jsonl", data_path.display());
    Ok(())
}

/// How the model's threshold was set, in words.
fn threshold_origin(t: &lara_vae::ThresholdInfo) -> String {
    match t.method.as_str() {
        "train-margin" => format!("training max + {} × (max − median), above POT", t.margin),
        other => format!("{other}, risk {}", t.risk),
    }
}
