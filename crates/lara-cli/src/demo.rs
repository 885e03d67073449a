//! `lara demo`: the main job end to end on a bundled public series.

use crate::bench::difference_score;
use crate::eval::estimated_window;
use crate::plot::{write_detection_plot, DetectionPlot, LEGEND};
use crate::report::{fmt_opt, table};
use crate::vae_cmds::{training_progress, write_detection_csv};
use anyhow::{Context, Result};
use clap::Args;
use lara_core::{read_csv_bytes, CsvOptions};
use lara_vae::{Detector, FitOptions};
use std::path::PathBuf;
use std::time::Instant;

/// The bundled series (NAB `ec2_cpu_utilization_24ae8d`, MIT; see data/demo/README.md).
pub const DEMO_NAME: &str = "nab_ec2_cpu_utilization_24ae8d_tr_604_1st_3447.csv";
pub const DEMO_CSV: &[u8] = include_bytes!("../../../data/demo/nab_ec2_cpu_utilization_24ae8d_tr_604_1st_3447.csv");

/// Shown after the options in `--help`.
const DEMO_HELP: &str = "\
Runs on the bundled NAB series (AWS CloudWatch CPU utilisation of one EC2 instance, 4032
five-minute samples, MIT licence): trains the VAE detector on the first 604 rows (NAB's
probationary period), scores every row, sets the label-free POT threshold, evaluates
against NAB's anomaly windows with TSB-AD's metrics (beside a detector-free |Δx| baseline)
and writes to --out-dir: the data, the model, detections.csv and detections.png.";

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
        "detector: window-{} VAE trained and scored in {:.2} s; POT threshold {:.3} ({} alarms)",
        detector.meta.options.window,
        t0.elapsed().as_secs_f64(),
        detection.threshold,
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
    let plot = DetectionPlot {
        columns: vec![series.column(0).iter().map(|&v| v as f64).collect()],
        scores: &detection.score,
        threshold: Some(detection.threshold),
        labels: Some(labels),
        train_end: series.train_end,
    };
    write_detection_plot(&png_path, &plot)?;
    println!("plot: {} ({LEGEND})", png_path.display());
    println!(
        "files in {}: the data, model.lara, detections.csv. Next:\n  lara detect --model {} --data {} --out scores.csv",
        args.out_dir.display(),
        model_path.display(),
        data_path.display()
    );
    Ok(())
}
