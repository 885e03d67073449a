//! `lara demo`: the main job end to end on a bundled public series.

use crate::bench::difference_score;
use crate::eval::estimated_window;
use crate::report::{fmt_opt, table};
use anyhow::{Context, Result};
use clap::Args;
use lara_core::{read_csv_bytes, CsvOptions};
use std::io::Write;
use std::path::PathBuf;

/// The bundled series (NAB `ec2_cpu_utilization_24ae8d`, MIT; see data/demo/README.md).
pub const DEMO_NAME: &str = "nab_ec2_cpu_utilization_24ae8d_tr_604_1st_3447.csv";
pub const DEMO_CSV: &[u8] = include_bytes!("../../../data/demo/nab_ec2_cpu_utilization_24ae8d_tr_604_1st_3447.csv");

/// Shown after the options in `--help`.
const DEMO_HELP: &str = "\
Runs on the bundled NAB series (AWS CloudWatch CPU of one EC2 instance): reads it,
scores every row, evaluates against NAB's labels with TSB-AD's metrics, and writes the
data and scores to --out-dir.";

#[derive(Args, Debug)]
#[command(after_help = DEMO_HELP)]
pub struct DemoArgs {
    /// Where to write the demo's files.
    #[arg(long, value_name = "DIR", default_value = "lara-demo")]
    pub out_dir: PathBuf,
}

pub fn run(args: &DemoArgs) -> Result<()> {
    let series = read_csv_bytes(DEMO_NAME, DEMO_CSV, &CsvOptions::default())?;
    std::fs::create_dir_all(&args.out_dir).with_context(|| format!("creating {}", args.out_dir.display()))?;
    let data_path = args.out_dir.join(DEMO_NAME);
    std::fs::write(&data_path, DEMO_CSV).with_context(|| format!("writing {}", data_path.display()))?;
    println!(
        "series: {DEMO_NAME} — {} rows × {} column(s), training prefix {} rows",
        series.n_rows,
        series.n_cols(),
        series.train_end
    );
    // Until the VAE detector lands, the demo scores with the detector-free baseline
    // |Δx| that `lara bench metrics` also uses.
    let scores = difference_score(&series);
    let scores_path = args.out_dir.join("scores.txt");
    let mut f = std::io::BufWriter::new(std::fs::File::create(&scores_path)?);
    for s in &scores {
        writeln!(f, "{s}")?;
    }
    f.flush()?;
    let labels = series.labels.as_ref().context("bundled series has labels")?;
    let window = estimated_window(&series);
    let suite = lara_metrics::evaluate(labels, &scores, window)?;
    println!("scores: baseline |x_t - x_(t-1)| (z-scored); metric window {window} (TSB-AD period estimate)");
    let rows: Vec<Vec<String>> = suite.named().iter().map(|(k, v)| vec![k.to_string(), fmt_opt(*v)]).collect();
    print!("{}", table(&["metric", "value"], &rows));
    println!(
        "wrote {} and {}; re-evaluate with:\n  lara eval --data {} --scores {}",
        data_path.display(),
        scores_path.display(),
        data_path.display(),
        scores_path.display()
    );
    Ok(())
}
