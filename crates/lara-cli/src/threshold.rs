//! `lara threshold`: label-free alarm thresholds for any score series.

use crate::eval::OutputFormat;
use crate::report::table;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lara_core::read_scores;
use lara_metrics::threshold::{mean_k_sigma, pot, top_k_percent, Spot, SpotDecision};
use std::path::PathBuf;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum Method {
    /// Peaks-over-threshold (Siffer et al. 2017): a GPD fitted to the calibration tail.
    Pot,
    /// Streaming POT: calibrate, then update the tail with every new peak.
    Spot,
    /// mean + k·σ of the calibration scores.
    MeanSigma,
    /// The score above which the top PCT % of calibration scores lie.
    TopK,
}

/// Shown after the options in `--help`.
const THRESHOLD_HELP: &str = "\
Examples:
  lara threshold --scores scores.txt --calibration 2000              # POT, risk 1e-3
  lara threshold --scores scores.txt --method spot --risk 1e-4 --out alarms.csv
  lara threshold --scores scores.txt --method top-k --pct 1

The first --calibration rows (all rows if omitted) fit the threshold; every row is then
flagged `score > threshold`. With spot, rows after the calibration are processed as a stream
and the threshold moves with the tail. --out writes one row per score: score, threshold,
is_anomaly.";

#[derive(Args, Debug)]
#[command(after_help = THRESHOLD_HELP)]
pub struct ThresholdArgs {
    /// Score file: one number per line, or a CSV with a `score` column.
    #[arg(long, value_name = "SCORES")]
    pub scores: PathBuf,
    #[arg(long, value_enum, default_value_t = Method::Pot)]
    pub method: Method,
    /// Rows used to fit the threshold (the rest is only flagged). Default: all rows.
    #[arg(long, value_name = "N")]
    pub calibration: Option<usize>,
    /// POT/SPOT: probability that a normal score exceeds the threshold.
    #[arg(long, default_value_t = 1e-3)]
    pub risk: f64,
    /// POT/SPOT: quantile of the calibration scores where the tail starts.
    #[arg(long, default_value_t = 0.98)]
    pub level: f64,
    /// mean-sigma: the k in mean + k·σ.
    #[arg(long, default_value_t = 3.0)]
    pub k: f64,
    /// top-k: the percentage of calibration scores above the threshold.
    #[arg(long, default_value_t = 1.0)]
    pub pct: f64,
    /// Write score, threshold, is_anomaly per row to this CSV.
    #[arg(long, value_name = "FILE.csv")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
}

pub fn run(args: &ThresholdArgs) -> Result<()> {
    let scores = read_scores(&args.scores, None)?;
    let n_cal = args.calibration.unwrap_or(scores.len());
    if n_cal == 0 || n_cal > scores.len() {
        bail!("--calibration {n_cal} must be between 1 and the number of scores ({})", scores.len());
    }
    let cal = &scores[..n_cal];
    let what = || format!("fitting a {:?} threshold on {} scores of {}", args.method, n_cal, args.scores.display());
    // Per-row thresholds: constant except for SPOT, which moves after the calibration rows.
    let thresholds: Vec<f64> = match args.method {
        Method::Pot => vec![pot(cal, args.risk, args.level).with_context(what)?.threshold; scores.len()],
        Method::MeanSigma => vec![mean_k_sigma(cal, args.k).with_context(what)?; scores.len()],
        Method::TopK => vec![top_k_percent(cal, args.pct).with_context(what)?; scores.len()],
        Method::Spot => {
            let mut spot = Spot::new(cal, args.risk, args.level).with_context(what)?;
            let mut th = vec![spot.threshold(); n_cal];
            for &s in &scores[n_cal..] {
                th.push(spot.threshold());
                if spot.step(s) == SpotDecision::Invalid {
                    bail!("non-finite score in {}", args.scores.display());
                }
            }
            th
        }
    };
    let alarms = scores.iter().zip(&thresholds).filter(|(s, t)| s > t).count();
    if let Some(path) = &args.out {
        let mut text = String::from("score,threshold,is_anomaly\n");
        for (s, t) in scores.iter().zip(&thresholds) {
            text.push_str(&format!("{s},{t},{}\n", u8::from(s > t)));
        }
        lara_core::write_atomic(path, text.as_bytes()).with_context(|| format!("writing {}", path.display()))?;
    }
    let last = *thresholds.last().expect("scores are not empty");
    match args.format {
        OutputFormat::Json => println!(
            "{}",
            serde_json::json!({"method": format!("{:?}", args.method), "threshold": last,
                "calibration_rows": n_cal, "rows": scores.len(), "alarms": alarms})
        ),
        OutputFormat::Table => print!(
            "{}",
            table(
                &["field", "value"],
                &[
                    vec!["method".into(), format!("{:?}", args.method)],
                    vec!["threshold".into(), format!("{last}")],
                    vec!["calibration_rows".into(), n_cal.to_string()],
                    vec!["rows".into(), scores.len().to_string()],
                    vec!["alarms".into(), format!("{alarms} ({:.3} %)", 100.0 * alarms as f64 / scores.len() as f64)],
                ]
            )
        ),
    }
    Ok(())
}
