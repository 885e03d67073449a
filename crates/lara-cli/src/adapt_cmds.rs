//! `lara adapt`: LARA — adapt a trained detector to a new normal pattern from a few rows.

use crate::data_args::DataArgs;
use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use lara_adapt::{AdaptConfig, Proposal, Ridge};
use lara_core::{read_csv, Series};
use lara_vae::adapt::file_sha256;
use lara_vae::{Detector, ParentRef};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ProposalArg {
    /// Encoder posterior at the pooled window and look-alikes (default; keeps the effective
    /// sample size up).
    Pooled,
    /// Encoder posterior q(z|x) of the new window.
    Encoder,
    /// The prior N(0, I), as in the paper.
    Prior,
}

/// Shown after the options in `--help`.
const ADAPT_HELP: &str = "\
Example: the pattern of a service changed after a deploy; 40 rows of the new normal are in
new.csv:
  lara adapt --model old.lara --data new.csv --slots 40 --out new.lara
  lara detect --model new.lara --data live.csv --out scores.csv

The VAE and its scaler stay frozen. The ruminate block restores, with the old model,
historical look-alikes of each new window and estimates its target latent by importance
sampling; two affine maps M_z (latent) and M_x (reconstruction, shared over time steps) are
fitted by ridge least squares pulled toward the identity (closed form, milliseconds). The
threshold is re-calibrated on the adapted scores of the new rows. The old training data is
never needed. NEW.lara records OLD.lara's path and SHA-256: OLD.lara is the rollback point.
Adapting an adapted model chains on top of its adapter (the ridge then pulls toward the
previous adapter).";

#[derive(Args, Debug)]
#[command(after_help = ADAPT_HELP)]
pub struct AdaptArgs {
    /// The model to adapt (written by `lara train` or an earlier `lara adapt`).
    #[arg(long, value_name = "OLD.lara")]
    pub model: PathBuf,
    /// Rows of the new normal pattern (no anomalies expected), with the model's columns.
    #[arg(long, value_name = "NEW.csv")]
    pub data: PathBuf,
    /// Use only the first N rows of NEW.csv (default: all rows). Fewer rows than one window
    /// (e.g. 40 with the default window of 100) are left-padded with the first row.
    #[arg(long, value_name = "N")]
    pub slots: Option<usize>,
    /// Where to write the adapted model (atomically).
    #[arg(long, value_name = "NEW.lara")]
    pub out: PathBuf,
    /// Ruminate block: historical look-alikes restored per window.
    #[arg(long, default_value_t = 8)]
    pub lookalikes: usize,
    /// Ruminate block: importance samples per window.
    #[arg(long, default_value_t = 64)]
    pub samples: usize,
    /// Ruminate block: importance-sampling proposal.
    #[arg(long, value_enum, default_value_t = ProposalArg::Pooled)]
    pub proposal: ProposalArg,
    /// Ridge of M_z toward the identity, in windows.
    #[arg(long, default_value_t = 4.0)]
    pub ridge_z: f64,
    /// Ridge of M_x toward the identity, in time steps per feature.
    #[arg(long, default_value_t = 2.0)]
    pub ridge_x: f64,
    /// Seed of the ruminate block's sampling.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub read: DataArgs,
}

/// The adaptation settings these flags describe.
pub fn adapt_config(args: &AdaptArgs) -> AdaptConfig {
    AdaptConfig {
        n_lookalikes: args.lookalikes,
        n_samples: args.samples,
        proposal: match args.proposal {
            ProposalArg::Pooled => Proposal::Pooled,
            ProposalArg::Encoder => Proposal::Encoder,
            ProposalArg::Prior => Proposal::Prior,
        },
        ridge_z: Ridge { pseudo_rows: args.ridge_z, ..AdaptConfig::default().ridge_z },
        ridge_x: Ridge::per_dim(args.ridge_x),
        seed: args.seed,
        ..AdaptConfig::default()
    }
}

/// The first `k` rows of a series.
pub fn head(series: &Series, k: usize) -> Series {
    let m = series.n_cols();
    Series {
        values: series.values[..k * m].to_vec(),
        n_rows: k,
        columns: series.columns.clone(),
        timestamps: series.timestamps.as_ref().map(|t| t[..k].to_vec()),
        labels: series.labels.as_ref().map(|l| l[..k].to_vec()),
        train_end: series.train_end.min(k),
    }
}

pub fn run(args: &AdaptArgs) -> Result<()> {
    let old = Detector::load(&args.model)?;
    let mut ro = args.read.csv_options();
    if ro.columns.is_none() {
        ro.columns = Some(old.meta.columns.clone());
    }
    let series = read_csv(&args.data, &ro)
        .with_context(|| format!("reading {} with the model's columns", args.data.display()))?;
    let k = args.slots.unwrap_or(series.n_rows);
    if k > series.n_rows {
        bail!("--slots {k}: {} has only {} rows", args.data.display(), series.n_rows);
    }
    if k == 0 {
        bail!("--slots must be at least 1");
    }
    let new = head(&series, k);
    if let Some(labels) = &new.labels {
        let n = labels.iter().filter(|&&l| l == 1).count();
        if n > 0 {
            tracing::warn!("{n} of the {k} adaptation rows are labelled anomalous; LARA assumes normal data");
        }
    }
    let parent = ParentRef { path: args.model.display().to_string(), sha256: file_sha256(&args.model)? };
    let t0 = Instant::now();
    let (adapted, report) = old.adapt(&new, &adapt_config(args), Some(parent))?;
    let secs = t0.elapsed().as_secs_f64();
    adapted.save(&args.out)?;
    let a = adapted.meta.adaptation.as_ref().expect("adapt sets the adaptation");
    println!(
        "adapted {} on {k} rows ({} windows) in {:.1} ms: generation {}, adapter {} bytes, ruminate ESS {:.1} (mean)",
        args.model.display(),
        report.n_windows,
        secs * 1e3,
        a.adapter.generation,
        a.adapter.param_bytes(),
        report.mean_ess,
    );
    println!(
        "fit residuals (anchor -> fitted): M_z {:.4} -> {:.4}, M_x {:.4} -> {:.4}",
        report.mse_z_anchor, report.mse_z_fit, report.mse_x_anchor, report.mse_x_fit
    );
    println!(
        "threshold {:.4} -> {:.4} ({} on the adapted scores of the new rows)",
        a.base_threshold.value, adapted.meta.threshold.value, adapted.meta.threshold.method
    );
    println!("written to {} (parent: {})", args.out.display(), args.model.display());
    Ok(())
}
