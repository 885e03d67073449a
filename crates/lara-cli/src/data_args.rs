//! Reader flags shared by every command that reads a data file.

use clap::Args;
use lara_core::{CsvOptions, MissingPolicy};

/// How to read a data CSV.
#[derive(Args, Debug, Clone, Default)]
pub struct DataArgs {
    /// Length of the training prefix (rows [0, N)). Default: from a TSB-AD file name
    /// (`..._tr_<N>_1st_<M>.csv`), else all rows.
    #[arg(long, value_name = "N")]
    pub train_end: Option<usize>,
    /// Column holding 0/1 anomaly labels. Default: `Label` if present.
    #[arg(long, value_name = "NAME")]
    pub label_column: Option<String>,
    /// Column holding timestamps (kept as text, not used as a feature). Default: `timestamp` if present.
    #[arg(long, value_name = "NAME")]
    pub timestamp_column: Option<String>,
    /// Feature columns to use, comma-separated, in this order. Default: all other columns.
    #[arg(long, value_name = "A,B,..", value_delimiter = ',')]
    pub columns: Option<Vec<String>>,
    /// What to do with empty / NaN / inf cells: error (the default, naming line and column),
    /// ffill (carry the last value forward), zero. (`lara inspect` counts them instead
    /// unless this is given.)
    #[arg(long, value_name = "POLICY")]
    pub missing: Option<MissingPolicy>,
}

impl DataArgs {
    pub fn csv_options(&self) -> CsvOptions {
        CsvOptions {
            timestamp_column: self.timestamp_column.clone(),
            label_column: self.label_column.clone(),
            columns: self.columns.clone(),
            train_end: self.train_end,
            missing: self.missing.unwrap_or(MissingPolicy::Error),
        }
    }
}
