//! CSV readers (TSB-AD convention and generic), gzip-transparent, and score files.
//!
//! **TSB-AD CSV**: one header line, feature columns, an optional `timestamp` column and a
//! `Label` column (0 normal, 1 anomaly); the file name `..._tr_<N>_1st_<M>.csv` gives the
//! training prefix `N`. Any CSV with a header works the same way.
//!
//! Conventions of [`read_csv`]:
//! - gzip is detected by the gzip magic bytes or a `.gz` name (a `.gz` name without the magic
//!   bytes is an error); a UTF-8 byte-order mark, CRLF line ends, blank lines and quoted fields
//!   are accepted; header names are trimmed, an empty name becomes `Unnamed: <j>` (0-based, as
//!   pandas does); a first line of numbers only is data, not a header (an error), unless it is
//!   pandas' default header `0,1,…,m−1`;
//! - label column: [`CsvOptions::label_column`] if given, else `Label`, else the first column
//!   named `label` in any letter case, else none;
//! - timestamp column: [`CsvOptions::timestamp_column`] if given, else `timestamp`, else the
//!   first column named `timestamp` in any letter case, else none. Timestamps are kept as text;
//! - feature columns: [`CsvOptions::columns`] in that order if given, else every other column
//!   in file order;
//! - cells are trimmed; empty cells and `nan`, `na`, `n/a`, `#n/a`, `<na>`, `null`, `none`
//!   (any letter case, optional sign on `nan`) are missing (NaN); `inf`, `infinity` with an
//!   optional sign are infinite. Both are *non-finite* and handled by [`MissingPolicy`].
//!   A number beyond the `f32` range is an error, not an infinity;
//! - a row with more or fewer fields than the header is an error;
//! - labels must be numbers equal to 0 or 1 (`0`, `1`, `0.0`, `1.0`, …); the missing policy
//!   applies to feature columns only;
//! - train_end: [`CsvOptions::train_end`], else [`train_end_from_file_name`], else all rows.

use std::borrow::Cow;
use std::fmt;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use crate::error::Location;
use crate::{CoreError, Series};

/// What to do with non-finite feature values (empty cells, `nan`, `inf`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MissingPolicy {
    /// Reject the file, naming line and column (default).
    #[default]
    Error,
    /// Carry the previous finite value of the column forward; leading gaps take the first
    /// finite value that follows; a column without any finite value is an error.
    Ffill,
    /// Replace by 0.
    Zero,
    /// Leave the value in place (NaN for missing, ±inf for infinities); for `lara inspect`.
    Keep,
}

impl MissingPolicy {
    /// The accepted spellings, for help texts.
    pub const VARIANTS: &'static str = "error|ffill|zero|keep";

    /// The lower-case name, as accepted by [`FromStr`].
    pub fn as_str(self) -> &'static str {
        match self {
            MissingPolicy::Error => "error",
            MissingPolicy::Ffill => "ffill",
            MissingPolicy::Zero => "zero",
            MissingPolicy::Keep => "keep",
        }
    }
}

impl fmt::Display for MissingPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MissingPolicy {
    type Err = CoreError;

    /// `error`, `ffill`, `zero` or `keep` (any letter case, surrounding blanks ignored).
    fn from_str(s: &str) -> Result<Self, CoreError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Ok(MissingPolicy::Error),
            "ffill" => Ok(MissingPolicy::Ffill),
            "zero" => Ok(MissingPolicy::Zero),
            "keep" => Ok(MissingPolicy::Keep),
            _ => {
                Err(CoreError::UnknownOption { what: "missing policy", value: s.to_string(), expected: Self::VARIANTS })
            }
        }
    }
}

/// Options of [`read_csv`]; `Default` gives the TSB-AD conventions.
#[derive(Debug, Clone, Default)]
pub struct CsvOptions {
    /// Timestamp column (default: `timestamp` if present).
    pub timestamp_column: Option<String>,
    /// Label column (default: `Label`, else `label` in any case, if present).
    pub label_column: Option<String>,
    /// Feature columns, in this order (default: all columns but timestamp and label).
    pub columns: Option<Vec<String>>,
    /// Training prefix (default: from the file name, else all rows).
    pub train_end: Option<usize>,
    /// Handling of non-finite feature values.
    pub missing: MissingPolicy,
}

/// The training prefix `N` from a TSB-AD file name `..._tr_<N>_1st_<M>.csv[.gz]` (`M` may be
/// `-1`); directories are ignored, and everything after the first `.` of the base name is
/// ignored, as TSB-AD does. `None` if the name does not follow the pattern.
pub fn train_end_from_file_name(name: &str) -> Option<usize> {
    let base = name.rsplit(['/', '\\']).next()?;
    let stem = base.split('.').next()?;
    let parts: Vec<&str> = stem.split('_').collect();
    let n = parts.len();
    if n < 4 || parts[n - 4] != "tr" || parts[n - 2] != "1st" {
        return None;
    }
    let first = parts[n - 1];
    let first_digits = first.strip_prefix('-').unwrap_or(first);
    if first_digits.is_empty() || !first_digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let tr = parts[n - 3];
    if tr.is_empty() || !tr.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    tr.parse().ok()
}

/// Reads a CSV file (plain or gzip) into a [`Series`]; see the module documentation for the
/// conventions. Errors name `path` as given, and the line and column where one applies.
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Series, CoreError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CoreError::Io { file: file.clone(), source })?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    read_csv_impl(&file, &name, &bytes, opts)
}

/// As [`read_csv`], from bytes in memory; `name` stands for the file in errors and gives the
/// training prefix and the gzip detection.
pub fn read_csv_bytes(name: &str, bytes: &[u8], opts: &CsvOptions) -> Result<Series, CoreError> {
    read_csv_impl(name, name, bytes, opts)
}

const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decompresses gzip data (by magic bytes or `.gz` name) and strips a UTF-8 BOM.
fn decode<'a>(file: &str, name: &str, bytes: &'a [u8]) -> Result<Cow<'a, [u8]>, CoreError> {
    let gz_name = name.to_ascii_lowercase().ends_with(".gz");
    let data: Cow<'a, [u8]> = if bytes.starts_with(&GZIP_MAGIC) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_end(&mut out)
            .map_err(|e| CoreError::Gzip { file: file.to_string(), detail: e.to_string() })?;
        Cow::Owned(out)
    } else if gz_name && !bytes.is_empty() {
        return Err(CoreError::Gzip {
            file: file.to_string(),
            detail: "the name ends in .gz but the data does not start with the gzip magic bytes".into(),
        });
    } else {
        Cow::Borrowed(bytes)
    };
    Ok(match data {
        Cow::Borrowed(b) => Cow::Borrowed(b.strip_prefix(BOM).unwrap_or(b)),
        Cow::Owned(v) => match v.strip_prefix(BOM) {
            Some(rest) => Cow::Owned(rest.to_vec()),
            None => Cow::Owned(v),
        },
    })
}

/// CSV records of a byte buffer with their 1-based start lines. (The csv crate's own line
/// count goes wrong after CRLF and blank lines, so lines are counted here: `\n`, `\r\n` and a
/// lone `\r` each end a line.)
struct Records<'d> {
    rdr: csv::Reader<&'d [u8]>,
    data: &'d [u8],
    /// Byte offset up to which lines have been counted; never inside a `\r\n` pair.
    pos: usize,
    /// Line number at `pos`.
    line: u64,
}

impl<'d> Records<'d> {
    fn new(data: &'d [u8]) -> Self {
        let rdr = csv::ReaderBuilder::new().has_headers(false).flexible(true).from_reader(data);
        Records { rdr, data, pos: 0, line: 1 }
    }

    /// Reads the next record into `rec`; `Ok(None)` at the end, else its start line.
    fn next(&mut self, file: &str, rec: &mut csv::ByteRecord) -> Result<Option<u64>, CoreError> {
        match self.rdr.read_byte_record(rec) {
            Ok(true) => {}
            Ok(false) => return Ok(None),
            Err(e) => {
                return Err(CoreError::Io {
                    file: file.to_string(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                })
            }
        }
        // The reported start may sit before the terminators of blank lines the parser skipped.
        let mut start = rec.position().map_or(self.pos, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
        start = start.clamp(self.pos, self.data.len());
        while start < self.data.len() && matches!(self.data[start], b'\r' | b'\n') {
            start += 1;
        }
        let chunk = &self.data[self.pos..start];
        let breaks = chunk
            .iter()
            .enumerate()
            .filter(|&(i, &b)| b == b'\n' || (b == b'\r' && chunk.get(i + 1) != Some(&b'\n')))
            .count();
        self.line += breaks as u64;
        self.pos = start;
        Ok(Some(self.line))
    }
}

fn cell_str<'r>(
    file: &str,
    rec: &'r csv::ByteRecord,
    j: usize,
    at: impl FnOnce() -> Location,
) -> Result<&'r str, CoreError> {
    let b = rec.get(j).unwrap_or(b"");
    std::str::from_utf8(b).map_err(|_| CoreError::InvalidUtf8 { file: file.to_string(), at: at() })
}

/// Parsed header: trimmed names (empty → `Unnamed: j`), checked for duplicates.
fn parse_header(file: &str, rec: &csv::ByteRecord, line: u64) -> Result<Vec<String>, CoreError> {
    let mut names = Vec::with_capacity(rec.len());
    for (j, raw) in rec.iter().enumerate() {
        let s = std::str::from_utf8(raw).map_err(|_| CoreError::InvalidUtf8 {
            file: file.to_string(),
            at: Location::cell(line, format!("#{}", j + 1)),
        })?;
        let s = s.trim();
        names.push(if s.is_empty() { format!("Unnamed: {j}") } else { s.to_string() });
    }
    // All-numeric first line → data, not a header; except pandas' default names `0,1,…,m−1`
    // (`DataFrame(array).to_csv(index=False)`).
    let pandas_default = names.iter().enumerate().all(|(j, n)| *n == j.to_string());
    if !names.is_empty() && !pandas_default && names.iter().all(|n| n.parse::<f64>().is_ok()) {
        return Err(CoreError::NoHeader { file: file.to_string(), line, first: names[0].clone() });
    }
    for (j, c) in names.iter().enumerate() {
        if let Some(k) = names[..j].iter().position(|d| d == c) {
            return Err(CoreError::DuplicateColumn {
                file: file.to_string(),
                place: format!("line {line}"),
                column: c.clone(),
                detail: format!("columns {} and {}", k + 1, j + 1),
            });
        }
    }
    Ok(names)
}

fn list_columns(names: &[String]) -> String {
    const MAX: usize = 80;
    let mut s = names.iter().take(MAX).map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    if names.len() > MAX {
        s.push_str(&format!(", ... ({} more)", names.len() - MAX));
    }
    s
}

/// Finds a column by exact name, or (when `default`) the first case-insensitive match.
fn find_role(
    file: &str,
    names: &[String],
    given: Option<&str>,
    default: &str,
    role: &'static str,
) -> Result<Option<usize>, CoreError> {
    match given {
        Some(g) => names.iter().position(|n| n == g).map(Some).ok_or_else(|| CoreError::UnknownColumn {
            file: file.to_string(),
            column: g.to_string(),
            role,
            available: list_columns(names),
        }),
        None => Ok(names
            .iter()
            .position(|n| n == default)
            .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case(default)))),
    }
}

/// A parsed feature cell.
enum Cell {
    Finite(f32),
    NonFinite(f32),
}

/// Parses a trimmed feature cell. `Err(detail)` for text that is not a number.
fn parse_value(t: &str) -> Result<Cell, &'static str> {
    if t.is_empty() {
        return Ok(Cell::NonFinite(f32::NAN));
    }
    if t.len() <= 9 {
        let lower = t.to_ascii_lowercase();
        match lower.as_str() {
            "nan" | "+nan" | "-nan" | "na" | "n/a" | "#n/a" | "<na>" | "null" | "none" => {
                return Ok(Cell::NonFinite(f32::NAN))
            }
            "inf" | "+inf" | "infinity" | "+infinity" => return Ok(Cell::NonFinite(f32::INFINITY)),
            "-inf" | "-infinity" => return Ok(Cell::NonFinite(f32::NEG_INFINITY)),
            _ => {}
        }
    }
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() && v.abs() <= f32::MAX as f64 => Ok(Cell::Finite(v as f32)),
        Ok(v) if v.is_finite() => Err(": beyond the f32 range"),
        Ok(_) => Err(": beyond the f64 range"),
        Err(_) => Err(""),
    }
}

/// Parses a label cell: a number equal to 0 or 1.
fn parse_label(t: &str) -> Option<u8> {
    match t.trim().parse::<f64>() {
        Ok(0.0) => Some(0),
        Ok(1.0) => Some(1),
        _ => None,
    }
}

fn read_csv_impl(file: &str, name: &str, bytes: &[u8], opts: &CsvOptions) -> Result<Series, CoreError> {
    let data = decode(file, name, bytes)?;
    let mut rdr = Records::new(&data);
    let mut rec = csv::ByteRecord::new();

    let header_line = match rdr.next(file, &mut rec)? {
        Some(l) => l,
        None => return Err(CoreError::EmptyFile { file: file.to_string() }),
    };
    let names = parse_header(file, &rec, header_line)?;

    let label_idx = find_role(file, &names, opts.label_column.as_deref(), "Label", "label")?;
    let ts_idx = find_role(file, &names, opts.timestamp_column.as_deref(), "timestamp", "timestamp")?;
    if let (Some(l), Some(t)) = (label_idx, ts_idx) {
        if l == t {
            return Err(CoreError::ColumnRoleConflict {
                file: file.to_string(),
                column: names[l].clone(),
                first: "the label",
                second: "the timestamp",
            });
        }
    }
    let features: Vec<usize> = match &opts.columns {
        Some(req) => {
            let mut idx = Vec::with_capacity(req.len());
            for (k, c) in req.iter().enumerate() {
                let j = names.iter().position(|n| n == c).ok_or_else(|| CoreError::UnknownColumn {
                    file: file.to_string(),
                    column: c.clone(),
                    role: "feature",
                    available: list_columns(&names),
                })?;
                if let Some(k0) = req[..k].iter().position(|d| d == c) {
                    return Err(CoreError::DuplicateColumn {
                        file: file.to_string(),
                        place: "requested columns".into(),
                        column: c.clone(),
                        detail: format!("requested at positions {} and {}", k0 + 1, k + 1),
                    });
                }
                for (role_idx, role) in [(label_idx, "the label"), (ts_idx, "the timestamp")] {
                    if role_idx == Some(j) {
                        return Err(CoreError::ColumnRoleConflict {
                            file: file.to_string(),
                            column: c.clone(),
                            first: "a feature",
                            second: role,
                        });
                    }
                }
                idx.push(j);
            }
            idx
        }
        None => (0..names.len()).filter(|&j| Some(j) != label_idx && Some(j) != ts_idx).collect(),
    };
    if features.is_empty() {
        return Err(CoreError::NoFeatureColumns { file: file.to_string(), header: list_columns(&names) });
    }
    let columns: Vec<String> = features.iter().map(|&j| names[j].clone()).collect();

    let m = features.len();
    let mut values: Vec<f32> = Vec::new();
    let mut labels: Vec<u8> = Vec::new();
    let mut timestamps: Vec<String> = Vec::new();
    let mut n_rows = 0usize;
    while let Some(line) = rdr.next(file, &mut rec)? {
        if rec.len() != names.len() {
            return Err(CoreError::RaggedRow { file: file.to_string(), line, expected: names.len(), found: rec.len() });
        }
        for (k, &j) in features.iter().enumerate() {
            let s = cell_str(file, &rec, j, || Location::cell(line, columns[k].clone()))?;
            let t = s.trim();
            let v = match parse_value(t) {
                Ok(Cell::Finite(v)) => v,
                Ok(Cell::NonFinite(v)) => {
                    if opts.missing == MissingPolicy::Error {
                        return Err(CoreError::NonFinite {
                            file: file.to_string(),
                            at: Location::cell(line, columns[k].clone()),
                            value: t.to_string(),
                        });
                    }
                    v
                }
                Err(detail) => {
                    return Err(CoreError::NonNumeric {
                        file: file.to_string(),
                        at: Location::cell(line, columns[k].clone()),
                        value: t.to_string(),
                        detail: detail.to_string(),
                    })
                }
            };
            values.push(v);
        }
        if let Some(l) = label_idx {
            let at = || Location::cell(line, names[l].clone());
            let s = cell_str(file, &rec, l, at)?;
            let v = parse_label(s).ok_or_else(|| CoreError::LabelNotBinary {
                file: file.to_string(),
                at: at(),
                value: s.trim().to_string(),
            })?;
            labels.push(v);
        }
        if let Some(ti) = ts_idx {
            let s = cell_str(file, &rec, ti, || Location::cell(line, names[ti].clone()))?;
            timestamps.push(s.trim().to_string());
        }
        n_rows += 1;
    }
    if n_rows == 0 {
        return Err(CoreError::NoRows { file: file.to_string(), header_line });
    }

    match opts.missing {
        MissingPolicy::Error | MissingPolicy::Keep => {}
        MissingPolicy::Zero => values.iter_mut().filter(|v| !v.is_finite()).for_each(|v| *v = 0.0),
        MissingPolicy::Ffill => {
            for (k, col) in columns.iter().enumerate() {
                let first = (0..n_rows).map(|t| values[t * m + k]).find(|v| v.is_finite());
                let Some(mut last) = first else {
                    return Err(CoreError::NoFiniteValue { file: file.to_string(), column: col.clone() });
                };
                for t in 0..n_rows {
                    let v = &mut values[t * m + k];
                    if v.is_finite() {
                        last = *v;
                    } else {
                        *v = last;
                    }
                }
            }
        }
    }

    let (train_end, origin) = match opts.train_end {
        Some(te) => (te, "given"),
        None => match train_end_from_file_name(name) {
            Some(te) => (te, "from the file name"),
            None => (n_rows, "all rows"),
        },
    };
    if train_end > n_rows {
        return Err(CoreError::TrainEndBeyondData { file: file.to_string(), train_end, n_rows, origin });
    }
    Ok(Series {
        values,
        n_rows,
        columns,
        timestamps: ts_idx.map(|_| timestamps),
        labels: label_idx.map(|_| labels),
        train_end,
    })
}

/// Reads anomaly scores: either one number per line (e.g. numpy `savetxt` output; `#` comment
/// lines and trailing blank lines are skipped, a blank line between numbers is an error) or a
/// CSV with a header holding a `score` column (exact name, else any letter case; other columns
/// ignored). The format is told by the first non-blank, non-comment line: a number → one per
/// line. gzip-transparent. Non-finite or non-numeric scores are errors naming the line;
/// `expected_rows`, when given, must equal the number of scores.
pub fn read_scores(path: &Path, expected_rows: Option<usize>) -> Result<Vec<f64>, CoreError> {
    let file = path.display().to_string();
    let bytes = std::fs::read(path).map_err(|source| CoreError::Io { file: file.clone(), source })?;
    read_scores_impl(&file, &file, &bytes, expected_rows)
}

/// As [`read_scores`], from bytes in memory; `name` stands for the file in errors.
pub fn read_scores_bytes(name: &str, bytes: &[u8], expected_rows: Option<usize>) -> Result<Vec<f64>, CoreError> {
    read_scores_impl(name, name, bytes, expected_rows)
}

fn parse_score(file: &str, t: &str, at: impl Fn() -> Location) -> Result<f64, CoreError> {
    match t.parse::<f64>() {
        Ok(v) if v.is_finite() => Ok(v),
        Ok(_) => Err(CoreError::NonFiniteScore { file: file.to_string(), at: at(), value: t.to_string() }),
        Err(_) => {
            Err(CoreError::NonNumeric { file: file.to_string(), at: at(), value: t.to_string(), detail: String::new() })
        }
    }
}

fn read_scores_impl(file: &str, name: &str, bytes: &[u8], expected: Option<usize>) -> Result<Vec<f64>, CoreError> {
    let data = decode(file, name, bytes)?;
    let is_content = |l: &[u8]| {
        let t = l.trim_ascii();
        !t.is_empty() && !t.starts_with(b"#")
    };
    let first = data.split(|&b| b == b'\n').find(|l| is_content(l));
    let plain = first.is_some_and(|l| std::str::from_utf8(l.trim_ascii()).is_ok_and(|s| s.parse::<f64>().is_ok()));
    let scores = if first.is_none() {
        Vec::new()
    } else if plain {
        read_plain_scores(file, &data)?
    } else {
        read_csv_scores(file, &data)?
    };
    if scores.is_empty() {
        return Err(CoreError::NoScores { file: file.to_string() });
    }
    if let Some(e) = expected {
        if e != scores.len() {
            return Err(CoreError::ScoreLengthMismatch { file: file.to_string(), expected: e, found: scores.len() });
        }
    }
    Ok(scores)
}

fn read_plain_scores(file: &str, data: &[u8]) -> Result<Vec<f64>, CoreError> {
    let mut out = Vec::new();
    let mut blank: Option<u64> = None;
    for (i, raw) in data.split(|&b| b == b'\n').enumerate() {
        let line = i as u64 + 1;
        let t = std::str::from_utf8(raw.trim_ascii())
            .map_err(|_| CoreError::InvalidUtf8 { file: file.to_string(), at: Location::line(line) })?;
        if t.starts_with('#') {
            continue;
        }
        if t.is_empty() {
            blank = blank.or(Some(line));
            continue;
        }
        if let Some(b) = blank {
            if !out.is_empty() {
                return Err(CoreError::NonNumeric {
                    file: file.to_string(),
                    at: Location::line(b),
                    value: String::new(),
                    detail: ": empty line between scores".into(),
                });
            }
        }
        blank = None;
        out.push(parse_score(file, t, || Location::line(line))?);
    }
    Ok(out)
}

fn read_csv_scores(file: &str, data: &[u8]) -> Result<Vec<f64>, CoreError> {
    let mut rdr = Records::new(data);
    let mut rec = csv::ByteRecord::new();
    let Some(header_line) = rdr.next(file, &mut rec)? else {
        return Ok(Vec::new());
    };
    let names: Vec<String> = rec.iter().map(|b| String::from_utf8_lossy(b).trim().to_string()).collect();
    let col = names
        .iter()
        .position(|n| n == "score")
        .or_else(|| names.iter().position(|n| n.eq_ignore_ascii_case("score")))
        .ok_or_else(|| CoreError::UnknownColumn {
            file: file.to_string(),
            column: "score".into(),
            role: "score",
            available: format!("{} (header on line {header_line})", list_columns(&names)),
        })?;
    let cname = names[col].clone();
    let mut out = Vec::new();
    while let Some(line) = rdr.next(file, &mut rec)? {
        if rec.len() != names.len() {
            return Err(CoreError::RaggedRow { file: file.to_string(), line, expected: names.len(), found: rec.len() });
        }
        let at = || Location::cell(line, cname.clone());
        let s = cell_str(file, &rec, col, at)?;
        out.push(parse_score(file, s.trim(), at)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_name_train_end() {
        assert_eq!(train_end_from_file_name("001_SMAP_id_1_Sensor_tr_2880_1st_7570.csv"), Some(2880));
        assert_eq!(train_end_from_file_name("/a/b/070_NAB_id_13_WebService_tr_604_1st_-1.csv.gz"), Some(604));
        assert_eq!(train_end_from_file_name("x_tr_5_1st_9"), Some(5));
        assert_eq!(train_end_from_file_name("data.csv"), None);
        assert_eq!(train_end_from_file_name("x_tr__1st_9.csv"), None);
        assert_eq!(train_end_from_file_name("x_tr_5_1st_.csv"), None);
        assert_eq!(train_end_from_file_name("x_tr_-5_1st_9.csv"), None);
        assert_eq!(train_end_from_file_name(""), None);
    }

    #[test]
    fn record_lines() {
        let lines = |t: &str| {
            let mut r = Records::new(t.as_bytes());
            let mut rec = csv::ByteRecord::new();
            let mut v = Vec::new();
            while let Some(l) = r.next("f", &mut rec).unwrap() {
                v.push(l);
            }
            v
        };
        assert_eq!(lines("a,b\r\n\r\n1,2\r\n\"x\ny\",3\r\n"), vec![1, 3, 4]);
        assert_eq!(lines("a,b\n\n1,2\n\"x\ny\",3\n"), vec![1, 3, 4]);
        assert_eq!(lines("a,b\n1,2\n\n\nz,3\n"), vec![1, 2, 5]);
        assert_eq!(lines("\n\na,b\n1,2\n"), vec![3, 4]);
        assert_eq!(lines("a\r1\r\r2"), vec![1, 2, 4]);
        assert_eq!(lines("\"a\nb\"\n\"c\r\nd\"\ne"), vec![1, 3, 5]);
    }

    #[test]
    fn policy_from_str() {
        assert_eq!("FFill".parse::<MissingPolicy>().unwrap(), MissingPolicy::Ffill);
        assert_eq!(MissingPolicy::default(), MissingPolicy::Error);
        for p in [MissingPolicy::Error, MissingPolicy::Ffill, MissingPolicy::Zero, MissingPolicy::Keep] {
            assert_eq!(p.to_string().parse::<MissingPolicy>().unwrap(), p);
        }
        let e = "drop".parse::<MissingPolicy>().unwrap_err().to_string();
        assert!(e.contains("drop") && e.contains("error|ffill|zero|keep"), "{e}");
    }

    #[test]
    fn value_spellings() {
        for s in ["", "nan", "NaN", "-nan", "NA", "null", "None"] {
            assert!(matches!(parse_value(s), Ok(Cell::NonFinite(v)) if v.is_nan()), "{s}");
        }
        for s in ["inf", "Inf", "+infinity"] {
            assert!(matches!(parse_value(s), Ok(Cell::NonFinite(v)) if v == f32::INFINITY), "{s}");
        }
        assert!(matches!(parse_value("-inf"), Ok(Cell::NonFinite(v)) if v == f32::NEG_INFINITY));
        assert!(matches!(parse_value("1e3"), Ok(Cell::Finite(v)) if v == 1000.0));
        assert!(matches!(parse_value(".5"), Ok(Cell::Finite(v)) if v == 0.5));
        assert!(parse_value("1e39").is_err());
        assert!(parse_value("1e400").is_err());
        assert!(parse_value("abc").is_err());
        assert_eq!(parse_label("1.0"), Some(1));
        assert_eq!(parse_label(" 0 "), Some(0));
        assert_eq!(parse_label("2"), None);
        assert_eq!(parse_label(""), None);
    }
}
