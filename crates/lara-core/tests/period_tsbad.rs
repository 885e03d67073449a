//! `find_length_rank` against TSB-AD 1.5 on every shared TSB-AD file. Reference values:
//! `tests/data/periods_tsbad.json`, produced by `tests/data/gen_periods_tsbad.py` (the command
//! is in the file's `command` key).

mod common;

use lara_core::{find_length_rank, read_csv, CsvOptions};

fn reference() -> serde_json::Value {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/periods_tsbad.json");
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// The first feature column parsed as f64, as pandas does (`data[:, 0]` after dropping
/// `Label` and `timestamp`; the shared files have no missing values, so `dropna` is a no-op).
fn first_column_f64(path: &std::path::Path) -> Vec<f64> {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let j = header.iter().position(|h| *h != "Label" && *h != "timestamp").unwrap();
    lines.filter(|l| !l.is_empty()).map(|l| l.split(',').nth(j).unwrap().trim().parse::<f64>().unwrap()).collect()
}

#[test]
fn periods_match_tsbad_python() {
    let r = reference();
    let periods = r["periods"].as_object().expect("`periods` object");
    let files = common::tsbad_files();
    assert_eq!(periods.len(), files.len(), "reference and shared data differ in file count");
    let mut mismatches = Vec::new();
    for p in &files {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let want = periods.get(&name).and_then(|v| v.as_u64()).unwrap_or_else(|| panic!("{name}: not in the reference"))
            as usize;
        let got = find_length_rank(&first_column_f64(p));
        if got != want {
            mismatches.push(format!("{name}: rust {got}, python {want}"));
        }
    }
    assert!(mismatches.is_empty(), "period mismatches:\n{}", mismatches.join("\n"));
}

/// The same through the `f32` [`lara_core::Series`] (what lara itself feeds the estimate).
#[test]
fn periods_match_through_f32_series() {
    let r = reference();
    let periods = r["periods"].as_object().expect("`periods` object");
    let mut mismatches = Vec::new();
    for p in common::tsbad_files() {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let want = periods[&name].as_u64().unwrap() as usize;
        let s = read_csv(&p, &CsvOptions::default()).unwrap();
        let x: Vec<f64> = s.column(0).into_iter().map(f64::from).collect();
        let got = find_length_rank(&x);
        if got != want {
            mismatches.push(format!("{name}: rust(f32 data) {got}, python {want}"));
        }
    }
    assert!(mismatches.is_empty(), "period mismatches:\n{}", mismatches.join("\n"));
}
