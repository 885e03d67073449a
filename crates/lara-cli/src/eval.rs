//! `lara eval`: TSB-AD metrics of a score series against a data file's labels.

use crate::data_args::DataArgs;
use crate::report::{fmt_opt, table};
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lara_core::{find_length_rank, read_csv, read_scores, Series};
use std::path::PathBuf;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Table,
    Json,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum RowRange {
    /// Every row of the file (TSB-AD's protocol).
    All,
    /// Only rows after the training prefix.
    Test,
}

/// Shown after the options in `--help`.
const EVAL_HELP: &str = "\
Examples:
  lara eval --data 001_SMAP_id_1_Sensor_tr_2880_1st_7570.csv --scores scores.txt
  lara eval --data metrics.csv --label-column is_incident --scores out.csv --window 50 --format json

SCORES is a text file with one number per row of the data file (numpy.savetxt style), or
a CSV with a header and a `score` column (e.g. the output of `lara detect`). Metrics follow
TSB-AD 1.5's `get_metrics` exactly; without --window the metric window is TSB-AD's period
estimate of the first feature column. Metrics that TSB-AD leaves undefined (labels without any
anomaly; AUC-ROC and VUS when every point is anomalous) print as n/a (null in JSON).";

#[derive(Args, Debug)]
#[command(after_help = EVAL_HELP)]
pub struct EvalArgs {
    /// Data file with labels (CSV or CSV.gz).
    #[arg(long, value_name = "FILE.csv")]
    pub data: PathBuf,
    /// Score file: one score per row of the data file, or a CSV with a `score` column.
    #[arg(long, value_name = "SCORES")]
    pub scores: PathBuf,
    /// Metric window (VUS buffer). Default: TSB-AD's period estimate of the first column.
    #[arg(long, value_name = "W")]
    pub window: Option<usize>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    /// Which rows to score: all (TSB-AD protocol) or test (after the training prefix).
    #[arg(long, value_enum, default_value_t = RowRange::All)]
    pub rows: RowRange,
    #[command(flatten)]
    pub data_args: DataArgs,
}

/// TSB-AD's metric window for a series: `find_length_rank` of the first feature column.
pub fn estimated_window(series: &Series) -> usize {
    let first: Vec<f64> = series.column(0).into_iter().map(f64::from).collect();
    find_length_rank(&first)
}

pub fn run(args: &EvalArgs) -> Result<()> {
    let series = read_csv(&args.data, &args.data_args.csv_options())?;
    let Some(labels) = series.labels.as_ref() else {
        bail!("{}: no label column (expected `Label`, or name one with --label-column)", args.data.display());
    };
    let scores = read_scores(&args.scores, Some(series.n_rows))?;
    let (window, window_source) = match args.window {
        Some(w) => (w, "given"),
        None => (estimated_window(&series), "estimated"),
    };
    let start = match args.rows {
        RowRange::All => 0,
        RowRange::Test => series.train_end,
    };
    if start >= series.n_rows {
        bail!("{}: no rows after the training prefix ({} rows)", args.data.display(), series.n_rows);
    }
    let labels = &labels[start..];
    let scores = &scores[start..];
    let suite = lara_metrics::evaluate(labels, scores, window)
        .with_context(|| format!("evaluating {}", args.scores.display()))?;
    // Beyond TSB-AD's suite: the area under the PA%K curve (Kim et al., AAAI 2022).
    let pak_auc = lara_metrics::pak::pa_k_auc(labels, scores);
    let anomalies = labels.iter().filter(|&&l| l == 1).count();
    if anomalies == 0 || anomalies == labels.len() {
        tracing::warn!("labels hold a single class: ranking metrics are undefined (n/a)");
    }
    match args.format {
        OutputFormat::Json => {
            let mut obj = serde_json::to_value(&suite)?;
            let m = obj.as_object_mut().expect("metric suite serialises to an object");
            m.insert("PA%K-AUC".into(), pak_auc.into());
            m.insert("window".into(), window.into());
            m.insert("window_source".into(), window_source.into());
            m.insert("rows".into(), labels.len().into());
            m.insert("anomalies".into(), anomalies.into());
            m.insert("file".into(), args.data.display().to_string().into());
            println!("{}", serde_json::to_string(&obj)?);
        }
        OutputFormat::Table => {
            println!(
                "{}: {} rows ({} anomalous), window {} ({})",
                args.data.display(),
                labels.len(),
                anomalies,
                window,
                window_source
            );
            let mut rows: Vec<Vec<String>> =
                suite.named().iter().map(|(k, v)| vec![k.to_string(), fmt_opt(*v)]).collect();
            rows.push(vec!["PA%K-AUC".into(), fmt_opt(pak_auc)]);
            print!("{}", table(&["metric", "value"], &rows));
        }
    }
    Ok(())
}
