//! One test per reader error case; each checks that the message names the file, the line and
//! the column where one applies.

use std::io::Write;

use lara_core::{read_csv, read_csv_bytes, read_scores, read_scores_bytes, CoreError, CsvOptions, MissingPolicy};

const F: &str = "data.csv";

fn opts() -> CsvOptions {
    CsvOptions::default()
}

fn with_missing(m: MissingPolicy) -> CsvOptions {
    CsvOptions { missing: m, ..CsvOptions::default() }
}

fn err(text: &str, o: &CsvOptions) -> (CoreError, String) {
    let e = read_csv_bytes(F, text.as_bytes(), o).expect_err("expected an error");
    let m = e.to_string();
    (e, m)
}

fn assert_names(msg: &str, parts: &[&str]) {
    for p in parts {
        assert!(msg.contains(p), "message {msg:?} should contain {p:?}");
    }
}

#[test]
fn empty_file() {
    for text in ["", "\n\n", "\u{feff}"] {
        let (e, m) = err(text, &opts());
        assert!(matches!(e, CoreError::EmptyFile { .. }), "{m}");
        assert_names(&m, &["data.csv:", "empty"]);
    }
}

#[test]
fn header_only() {
    let (e, m) = err("a,b,Label\n", &opts());
    assert!(matches!(e, CoreError::NoRows { .. }), "{m}");
    assert_names(&m, &["data.csv:", "no data rows", "line 1"]);
}

#[test]
fn no_header() {
    let (e, m) = err("1.0,2.0\n3.0,4.0\n", &opts());
    assert!(matches!(e, CoreError::NoHeader { line: 1, .. }), "{m}");
    assert_names(&m, &["data.csv: line 1:", "header"]);
    // pandas' default column names are a header.
    let s = read_csv_bytes(F, b"0,1\n3.0,4.0\n", &opts()).unwrap();
    assert_eq!(s.columns, vec!["0", "1"]);
    let (e, _) = err("0,2\n3.0,4.0\n", &opts());
    assert!(matches!(e, CoreError::NoHeader { .. }));
}

#[test]
fn ragged_row() {
    let (e, m) = err("a,b,Label\n1,2,0\n1,0\n", &opts());
    assert!(matches!(e, CoreError::RaggedRow { line: 3, expected: 3, found: 2, .. }), "{m}");
    assert_names(&m, &["data.csv: line 3:", "expected 3 fields", "found 2"]);
}

#[test]
fn non_numeric_cell() {
    let text = "cpu,mem,Label\n1,2,0\n".to_string() + &"1,2,0\n".repeat(14) + "abc,2,0\n";
    let (e, m) = err(&text, &opts());
    assert!(matches!(e, CoreError::NonNumeric { .. }), "{m}");
    assert_eq!(m, r#"data.csv: line 17, column "cpu": cannot parse "abc" as a number"#);
}

#[test]
fn number_beyond_f32() {
    let (_, m) = err("a\n1\n1e39\n", &opts());
    assert_names(&m, &["data.csv: line 3, column \"a\"", "1e39", "f32"]);
}

#[test]
fn line_numbers_count_blank_lines_crlf_and_quoted_newlines() {
    let (_, m) = err("a,b\r\n\r\n1,2\r\n\"x\ny\",3\r\n", &opts());
    assert_names(&m, &["data.csv: line 4, column \"a\""]);
    let (_, m) = err("\u{feff}a,b\n1,2\n,\"zz\"\n", &opts());
    assert_names(&m, &["data.csv: line 3, column \"a\"", "non-finite"]);
}

#[test]
fn non_finite_under_policy_error() {
    for v in ["", "nan", "NaN", "inf", "-inf"] {
        let text = format!("cpu,mem,Label\n1,2,0\n1,{v},0\n");
        let (e, m) = err(&text, &with_missing(MissingPolicy::Error));
        assert!(matches!(e, CoreError::NonFinite { .. }), "{m}");
        assert_names(&m, &["data.csv: line 3, column \"mem\"", "non-finite", &format!("{v:?}")]);
    }
}

#[test]
fn non_finite_under_policy_ffill() {
    let text = "a,b,Label\nnan,1,0\n2,,0\n,inf,0\n4,5,1\n";
    let s = read_csv_bytes(F, text.as_bytes(), &with_missing(MissingPolicy::Ffill)).unwrap();
    assert_eq!(s.values, vec![2.0, 1.0, 2.0, 1.0, 2.0, 1.0, 4.0, 5.0]);
    // A column without any finite value is an error naming the column.
    let (e, m) = err("a,b\n1,nan\n2,\n3,-inf\n", &with_missing(MissingPolicy::Ffill));
    assert!(matches!(e, CoreError::NoFiniteValue { .. }), "{m}");
    assert_names(&m, &["data.csv: column \"b\"", "ffill"]);
}

#[test]
fn non_finite_under_policy_zero_and_keep() {
    let text = "a,b\nnan,1\n2,\n-inf,3\n";
    let s = read_csv_bytes(F, text.as_bytes(), &with_missing(MissingPolicy::Zero)).unwrap();
    assert_eq!(s.values, vec![0.0, 1.0, 2.0, 0.0, 0.0, 3.0]);
    assert_eq!(s.non_finite_count(), 0);
    let s = read_csv_bytes(F, text.as_bytes(), &with_missing(MissingPolicy::Keep)).unwrap();
    assert_eq!(s.non_finite_count(), 3);
    assert!(s.values[0].is_nan() && s.values[3].is_nan() && s.values[4] == f32::NEG_INFINITY);
    // Under `zero`, a non-numeric cell is still an error.
    let (_, m) = err("a,b\n1,x\n", &with_missing(MissingPolicy::Zero));
    assert_names(&m, &["data.csv: line 2, column \"b\"", "\"x\""]);
}

#[test]
fn label_not_binary() {
    let (e, m) = err("a,Label\n1,0\n2,1.0\n3,2\n", &opts());
    assert!(matches!(e, CoreError::LabelNotBinary { .. }), "{m}");
    assert_names(&m, &["data.csv: line 4, column \"Label\"", "0 or 1", "\"2\""]);
    let (_, m) = err("a,Label\n1,\n", &opts());
    assert_names(&m, &["data.csv: line 2, column \"Label\""]);
    let (_, m) = err("a,Label\n1,yes\n", &opts());
    assert_names(&m, &["data.csv: line 2, column \"Label\"", "yes"]);
}

#[test]
fn train_end_beyond_data() {
    let text = "a,Label\n1,0\n2,0\n";
    let e = read_csv_bytes("x_tr_5_1st_9.csv", text.as_bytes(), &opts()).unwrap_err();
    assert!(matches!(e, CoreError::TrainEndBeyondData { train_end: 5, n_rows: 2, .. }));
    assert_names(&e.to_string(), &["x_tr_5_1st_9.csv:", "train_end 5", "from the file name", "2 rows"]);
    let o = CsvOptions { train_end: Some(3), ..opts() };
    let (_, m) = err(text, &o);
    assert_names(&m, &["data.csv:", "train_end 3", "given", "2 rows"]);
    let o = CsvOptions { train_end: Some(2), ..opts() };
    assert_eq!(read_csv_bytes(F, text.as_bytes(), &o).unwrap().train_end, 2);
}

#[test]
fn zero_feature_columns() {
    let (e, m) = err("timestamp,Label\n2020,0\n", &opts());
    assert!(matches!(e, CoreError::NoFeatureColumns { .. }), "{m}");
    assert_names(&m, &["data.csv:", "no feature columns", "\"timestamp\", \"Label\""]);
    let o = CsvOptions { columns: Some(vec![]), ..opts() };
    let (e, _) = err("a,Label\n1,0\n", &o);
    assert!(matches!(e, CoreError::NoFeatureColumns { .. }));
}

#[test]
fn unknown_column() {
    let o = CsvOptions { columns: Some(vec!["cpu".into(), "disk".into()]), ..opts() };
    let (e, m) = err("cpu,mem,Label\n1,2,0\n", &o);
    assert!(matches!(e, CoreError::UnknownColumn { .. }), "{m}");
    assert_names(
        &m,
        &["data.csv:", "unknown feature column \"disk\"", "available columns: \"cpu\", \"mem\", \"Label\""],
    );
    let o = CsvOptions { label_column: Some("is_anomaly".into()), ..opts() };
    let (_, m) = err("cpu,mem\n1,2\n", &o);
    assert_names(&m, &["data.csv:", "unknown label column \"is_anomaly\""]);
    let o = CsvOptions { timestamp_column: Some("time".into()), ..opts() };
    let (_, m) = err("cpu,mem\n1,2\n", &o);
    assert_names(&m, &["data.csv:", "unknown timestamp column \"time\""]);
}

#[test]
fn duplicate_columns() {
    let (e, m) = err("a,b,a\n1,2,3\n", &opts());
    assert!(matches!(e, CoreError::DuplicateColumn { .. }), "{m}");
    assert_names(&m, &["data.csv: line 1:", "duplicate column name \"a\"", "columns 1 and 3"]);
    let o = CsvOptions { columns: Some(vec!["a".into(), "a".into()]), ..opts() };
    let (_, m) = err("a,b\n1,2\n", &o);
    assert_names(&m, &["data.csv:", "duplicate column name \"a\""]);
}

#[test]
fn feature_that_is_the_label() {
    let o = CsvOptions { columns: Some(vec!["a".into(), "Label".into()]), ..opts() };
    let (e, m) = err("a,Label\n1,0\n", &o);
    assert!(matches!(e, CoreError::ColumnRoleConflict { .. }), "{m}");
    assert_names(&m, &["data.csv:", "\"Label\""]);
}

#[test]
fn corrupt_gzip() {
    // Valid magic, garbage after.
    let bytes = [0x1f, 0x8b, 0x08, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9];
    let e = read_csv_bytes("data.csv.gz", &bytes, &opts()).unwrap_err();
    assert!(matches!(e, CoreError::Gzip { .. }), "{e}");
    assert_names(&e.to_string(), &["data.csv.gz:", "gzip"]);
    // Truncated stream.
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"a,Label\n1,0\n2,0\n3,1\n").unwrap();
    let gz = enc.finish().unwrap();
    let e = read_csv_bytes("data.csv.gz", &gz[..gz.len() - 6], &opts()).unwrap_err();
    assert!(matches!(e, CoreError::Gzip { .. }), "{e}");
    // .gz name without gzip data.
    let e = read_csv_bytes("data.csv.gz", b"a\n1\n", &opts()).unwrap_err();
    assert_names(&e.to_string(), &["data.csv.gz:", "gzip"]);
}

#[test]
fn invalid_utf8_cell() {
    let e = read_csv_bytes(F, b"a,b\n1,\xff\n", &opts()).unwrap_err();
    assert_names(&e.to_string(), &["data.csv: line 2, column \"b\"", "UTF-8"]);
}

#[test]
fn missing_file_names_the_path() {
    let p = std::env::temp_dir().join("lara-core-does-not-exist-4711.csv");
    let e = read_csv(&p, &opts()).unwrap_err();
    assert!(matches!(e, CoreError::Io { .. }));
    assert_names(&e.to_string(), &["lara-core-does-not-exist-4711.csv:"]);
    let e = read_scores(&p, None).unwrap_err();
    assert_names(&e.to_string(), &["lara-core-does-not-exist-4711.csv:"]);
}

#[test]
fn score_length_mismatch() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("run.score.txt");
    std::fs::write(&p, "1.234000000000000000e-01\n5.000000000000000000e-01\n").unwrap();
    assert_eq!(read_scores(&p, Some(2)).unwrap(), vec![0.1234, 0.5]);
    let e = read_scores(&p, Some(3)).unwrap_err();
    assert!(matches!(e, CoreError::ScoreLengthMismatch { expected: 3, found: 2, .. }), "{e}");
    assert_names(&e.to_string(), &["run.score.txt:", "2 scores", "3 rows"]);
}

#[test]
fn score_errors_name_line_and_column() {
    let (n, o) = ("s.txt", None);
    let e = read_scores_bytes(n, b"0.1\n0.2\nabc\n", o).unwrap_err();
    assert_eq!(e.to_string(), r#"s.txt: line 3: cannot parse "abc" as a number"#);
    let e = read_scores_bytes(n, b"0.1\nnan\n", o).unwrap_err();
    assert!(matches!(e, CoreError::NonFiniteScore { .. }));
    assert_names(&e.to_string(), &["s.txt: line 2:", "\"nan\"", "not a finite"]);
    let e = read_scores_bytes(n, b"0.1\n\n0.2\n", o).unwrap_err();
    assert_names(&e.to_string(), &["s.txt: line 2:", "empty line"]);
    let e = read_scores_bytes(n, b"", o).unwrap_err();
    assert!(matches!(e, CoreError::NoScores { .. }));
    // CSV with a `score` column.
    let csv = b"t,score,label\n1,0.5,0\n2,inf,1\n";
    let e = read_scores_bytes("s.csv", csv, o).unwrap_err();
    assert_names(&e.to_string(), &["s.csv: line 3, column \"score\"", "\"inf\""]);
    let e = read_scores_bytes("s.csv", b"t,value\n1,2\n", o).unwrap_err();
    assert_names(&e.to_string(), &["s.csv:", "unknown score column", "\"t\", \"value\""]);
    let e = read_scores_bytes("s.csv", b"t,score\n1,2\n3\n", o).unwrap_err();
    assert_names(&e.to_string(), &["s.csv: line 3:", "expected 2 fields"]);
}

#[test]
fn score_formats() {
    let v = read_scores_bytes("s.txt", b"# comment\n1e-3\r\n-2.5\n\n\n", Some(2)).unwrap();
    assert_eq!(v, vec![1e-3, -2.5]);
    let v = read_scores_bytes("s.csv", b"\xEF\xBB\xBFidx,Score\n0,0.25\n1,\"0.75\"\n", None).unwrap();
    assert_eq!(v, vec![0.25, 0.75]);
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(b"0.5\n0.25\n").unwrap();
    let gz = enc.finish().unwrap();
    assert_eq!(read_scores_bytes("s.txt.gz", &gz, Some(2)).unwrap(), vec![0.5, 0.25]);
}
