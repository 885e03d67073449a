//! `lara inspect`: what a data file holds.

use crate::data_args::DataArgs;
use crate::eval::{estimated_window, OutputFormat};
use crate::report::table;
use anyhow::Result;
use clap::Args;
use lara_core::{read_csv, MissingPolicy};
use serde::Serialize;
use std::path::PathBuf;

/// Shown after the options in `--help`.
const INSPECT_HELP: &str = "\
Example: lara inspect 042_MSL_id_1_Sensor_tr_2158_1st_2708.csv

Reads the file leniently (NaN/inf and empty cells are counted, not rejected, unless
--missing says otherwise) and prints rows, columns, the training prefix, the anomaly ratio,
TSB-AD's period estimate (the default metric window) and per-column statistics.";

#[derive(Args, Debug)]
#[command(after_help = INSPECT_HELP)]
pub struct InspectArgs {
    /// Data file (CSV or CSV.gz).
    #[arg(value_name = "FILE.csv")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    pub format: OutputFormat,
    #[command(flatten)]
    pub data_args: DataArgs,
}

#[derive(Serialize)]
struct ColumnSummary {
    name: String,
    min: Option<f64>,
    max: Option<f64>,
    mean: Option<f64>,
    non_finite: usize,
    constant: bool,
}

#[derive(Serialize)]
struct Summary {
    file: String,
    rows: usize,
    columns: usize,
    train_end: usize,
    test_rows: usize,
    has_timestamps: bool,
    labelled: bool,
    anomalies: Option<usize>,
    anomaly_ratio: Option<f64>,
    anomaly_segments: Option<usize>,
    estimated_period: usize,
    non_finite: usize,
    column_stats: Vec<ColumnSummary>,
}

fn column_summary(name: &str, col: &[f32]) -> ColumnSummary {
    let finite: Vec<f64> = col.iter().filter(|v| v.is_finite()).map(|&v| v as f64).collect();
    let (min, max, mean) = if finite.is_empty() {
        (None, None, None)
    } else {
        let mn = finite.iter().cloned().fold(f64::INFINITY, f64::min);
        let mx = finite.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        (Some(mn), Some(mx), Some(finite.iter().sum::<f64>() / finite.len() as f64))
    };
    ColumnSummary { name: name.to_string(), min, max, mean, non_finite: col.len() - finite.len(), constant: min == max }
}

pub fn run(args: &InspectArgs) -> Result<()> {
    let mut opts = args.data_args.csv_options();
    if args.data_args.missing.is_none() {
        opts.missing = MissingPolicy::Keep;
    }
    let series = read_csv(&args.file, &opts)?;
    let column_stats: Vec<ColumnSummary> =
        (0..series.n_cols()).map(|j| column_summary(&series.columns[j], &series.column(j))).collect();
    let anomalies = series.labels.as_ref().map(|l| l.iter().filter(|&&v| v == 1).count());
    let segments = series.labels.as_ref().map(|l| lara_metrics::runs(l.iter().map(|&v| v == 1)).len());
    let summary = Summary {
        file: args.file.display().to_string(),
        rows: series.n_rows,
        columns: series.n_cols(),
        train_end: series.train_end,
        test_rows: series.n_rows - series.train_end,
        has_timestamps: series.timestamps.is_some(),
        labelled: series.labels.is_some(),
        anomalies,
        anomaly_ratio: anomalies.map(|a| a as f64 / series.n_rows.max(1) as f64),
        anomaly_segments: segments,
        estimated_period: estimated_window(&series),
        non_finite: column_stats.iter().map(|c| c.non_finite).sum(),
        column_stats,
    };
    match args.format {
        OutputFormat::Json => println!("{}", serde_json::to_string_pretty(&summary)?),
        OutputFormat::Table => print_table(&summary),
    }
    Ok(())
}

fn print_table(s: &Summary) {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let rows = vec![
        vec!["file".into(), s.file.clone()],
        vec!["rows".into(), s.rows.to_string()],
        vec!["columns".into(), s.columns.to_string()],
        vec!["train_end".into(), format!("{} (test rows: {})", s.train_end, s.test_rows)],
        vec!["timestamps".into(), if s.has_timestamps { "yes" } else { "no" }.into()],
        vec![
            "anomalies".into(),
            opt(s.anomalies.map(|a| format!("{a} in {} segments", s.anomaly_segments.unwrap_or(0)))),
        ],
        vec!["anomaly_ratio".into(), opt(s.anomaly_ratio.map(|r| format!("{:.4}", r)))],
        vec!["estimated_period".into(), s.estimated_period.to_string()],
        vec!["non_finite_cells".into(), s.non_finite.to_string()],
    ];
    print!("{}", table(&["field", "value"], &rows));
    println!();
    let f = |v: Option<f64>| v.map(|x| format!("{x:.4}")).unwrap_or_else(|| "-".into());
    let cols: Vec<Vec<String>> = s
        .column_stats
        .iter()
        .map(|c| {
            vec![
                c.name.clone(),
                f(c.min),
                f(c.max),
                f(c.mean),
                c.non_finite.to_string(),
                if c.constant { "yes".into() } else { "".into() },
            ]
        })
        .collect();
    print!("{}", table(&["column", "min", "max", "mean", "non_finite", "constant"], &cols));
}
