//! Errors of lara-core.
//!
//! Every input error names the file, and the line (1-based as in an editor; the header is
//! line 1) and the column name where one applies, e.g.
//! `data.csv: line 17, column "cpu": cannot parse "abc" as a number`.

use std::fmt;

/// A place in an input file: a 1-based line and, where one applies, a column name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// 1-based line as a user sees it in an editor (header = line 1).
    pub line: u64,
    /// Column name, if the error concerns one cell.
    pub column: Option<String>,
}

impl Location {
    /// A whole line.
    pub fn line(line: u64) -> Self {
        Location { line, column: None }
    }

    /// One cell.
    pub fn cell(line: u64, column: impl Into<String>) -> Self {
        Location { line, column: Some(column.into()) }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(c) => write!(f, "line {}, column {:?}", self.line, c),
            None => write!(f, "line {}", self.line),
        }
    }
}

/// Errors of lara-core. `file` is the path (or name) as the caller gave it.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The file could not be opened or read.
    #[error("{file}: {source}")]
    Io { file: String, source: std::io::Error },

    /// The file has no content at all (or only blank lines).
    #[error("{file}: the file is empty (expected a header line with column names)")]
    EmptyFile { file: String },

    /// The first line holds numbers only, so it is data, not a header.
    #[error("{file}: line {line}: expected a header line with column names, found data ({first:?}, ...)")]
    NoHeader { file: String, line: u64, first: String },

    /// A header but no data rows.
    #[error("{file}: no data rows after the header (line {header_line})")]
    NoRows { file: String, header_line: u64 },

    /// A row whose field count differs from the header's.
    #[error("{file}: line {line}: expected {expected} fields (as in the header), found {found}")]
    RaggedRow { file: String, line: u64, expected: usize, found: usize },

    /// A cell that is not valid UTF-8 text.
    #[error("{file}: {at}: not valid UTF-8 text")]
    InvalidUtf8 { file: String, at: Location },

    /// A cell that is not a number (nor one of the recognised missing / infinite spellings).
    #[error("{file}: {at}: cannot parse {value:?} as a number{detail}")]
    NonNumeric { file: String, at: Location, value: String, detail: String },

    /// A missing or infinite value under missing policy `error`.
    #[error(
        "{file}: {at}: non-finite value {value:?} (missing policy `error`; \
         choose --missing ffill, zero or keep to accept it)"
    )]
    NonFinite { file: String, at: Location, value: String },

    /// Missing policy `ffill`, but a column has no finite value to fill from.
    #[error("{file}: column {column:?}: no finite value to fill from (missing policy `ffill`)")]
    NoFiniteValue { file: String, column: String },

    /// A label cell that is not 0 or 1.
    #[error("{file}: {at}: label must be 0 or 1, found {value:?}")]
    LabelNotBinary { file: String, at: Location, value: String },

    /// The training prefix ends beyond the last row.
    #[error("{file}: train_end {train_end} ({origin}) is beyond the data ({n_rows} rows)")]
    TrainEndBeyondData { file: String, train_end: usize, n_rows: usize, origin: &'static str },

    /// No feature column is left once timestamp and label columns are set aside.
    #[error("{file}: no feature columns (header: {header})")]
    NoFeatureColumns { file: String, header: String },

    /// A column was requested (as `role`) that the header does not have.
    #[error("{file}: unknown {role} column {column:?}; available columns: {available}")]
    UnknownColumn { file: String, column: String, role: &'static str, available: String },

    /// Two columns of the header (or of a `--columns` request) have the same name.
    /// `place` is e.g. `line 1` (the header) or `requested columns`.
    #[error("{file}: {place}: duplicate column name {column:?} ({detail})")]
    DuplicateColumn { file: String, place: String, column: String, detail: String },

    /// One column asked to play two roles (e.g. a feature that is also the label column).
    #[error("{file}: column {column:?} cannot be both {first} and {second}")]
    ColumnRoleConflict { file: String, column: String, first: &'static str, second: &'static str },

    /// Gzip data that cannot be decompressed.
    #[error("{file}: corrupt gzip data: {detail}")]
    Gzip { file: String, detail: String },

    /// A score that is NaN or infinite.
    #[error("{file}: {at}: score {value:?} is not a finite number")]
    NonFiniteScore { file: String, at: Location, value: String },

    /// A score file without any score.
    #[error("{file}: no scores in the file")]
    NoScores { file: String },

    /// A score file whose length differs from the series.
    #[error("{file}: {found} scores, but the series has {expected} rows (one score per row expected)")]
    ScoreLengthMismatch { file: String, expected: usize, found: usize },

    /// An in-memory series with inconsistent parts (see [`crate::Series::new`]).
    #[error("invalid series: {0}")]
    InvalidSeries(String),

    /// Invalid window parameters (see [`crate::Windows::new`]).
    #[error("invalid windows: {0}")]
    InvalidWindow(String),

    /// An unknown option value, e.g. `--missing foo`.
    #[error("unknown {what} {value:?}; expected one of {expected}")]
    UnknownOption { what: &'static str, value: String, expected: &'static str },
}
