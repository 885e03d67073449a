//! Reading the shared TSB-AD files, gzip round trips and the CSV conventions.

mod common;

use std::io::Write;

use lara_core::{read_csv, read_csv_bytes, train_end_from_file_name, CsvOptions};

#[test]
fn every_tsbad_file_reads() {
    let files = common::tsbad_files();
    assert_eq!(files.len(), 104, "expected the 104 files of shared/data/tsbad");
    let mut per_dataset = std::collections::BTreeMap::<&str, usize>::new();
    for p in &files {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let s = read_csv(p, &CsvOptions::default()).unwrap_or_else(|e| panic!("{e}"));
        let (dataset, cols, ts) = if name.contains("_SMAP_") {
            ("SMAP", 25, false)
        } else if name.contains("_MSL_") {
            ("MSL", 55, false)
        } else if name.contains("_NAB_") {
            ("NAB", 1, true)
        } else if name.contains("_UCR_") {
            ("UCR", 1, false)
        } else {
            panic!("{name}: unknown dataset")
        };
        *per_dataset.entry(dataset).or_default() += 1;
        assert_eq!(s.n_cols(), cols, "{name}");
        assert_eq!(s.timestamps.is_some(), ts, "{name}");
        if ts {
            assert_eq!(s.columns, vec!["value".to_string()], "{name}");
        }
        assert!(!s.columns.iter().any(|c| c == "Label" || c == "timestamp"), "{name}");
        let labels = s.labels.as_ref().unwrap_or_else(|| panic!("{name}: no labels"));
        assert_eq!(labels.len(), s.n_rows, "{name}");
        assert_eq!(s.values.len(), s.n_rows * s.n_cols(), "{name}");
        assert_eq!(Some(s.train_end), train_end_from_file_name(&name), "{name}");
        assert!(s.train_end < s.n_rows, "{name}");
        assert_eq!(s.non_finite_count(), 0, "{name}");
        // The training prefix holds no labelled anomaly (data README).
        assert!(labels[..s.train_end].iter().all(|&l| l == 0), "{name}: anomaly in training prefix");
        // `_1st_<M>`: the first anomaly row (−1: none).
        let first: i64 = name.trim_end_matches(".csv").rsplit('_').next().unwrap().parse().unwrap();
        let found = labels.iter().position(|&l| l == 1).map_or(-1, |i| i as i64);
        assert_eq!(found, first, "{name}: first anomaly");
        let r = s.anomaly_ratio().unwrap();
        assert!((0.0..1.0).contains(&r), "{name}");
    }
    let expect = [("MSL", 20), ("NAB", 40), ("SMAP", 41), ("UCR", 3)];
    assert_eq!(per_dataset.into_iter().collect::<Vec<_>>(), expect.to_vec());
}

#[test]
fn gzip_round_trip() {
    let src = common::shared_dir().join("data/tsbad/062_NAB_id_3_Misc_tr_604_1st_2787.csv");
    let plain = read_csv(&src, &CsvOptions::default()).unwrap();
    let bytes = std::fs::read(&src).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let gz_path = dir.path().join("062_NAB_id_3_Misc_tr_604_1st_2787.csv.gz");
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(&bytes).unwrap();
    let gz = enc.finish().unwrap();
    std::fs::write(&gz_path, &gz).unwrap();
    let s = read_csv(&gz_path, &CsvOptions::default()).unwrap();
    assert_eq!(s, plain);
    assert_eq!(s.train_end, 604);
    // Detected by the magic bytes alone, whatever the name.
    let odd = dir.path().join("compressed.dat");
    std::fs::write(&odd, &gz).unwrap();
    let s = read_csv(&odd, &CsvOptions { train_end: Some(604), ..Default::default() }).unwrap();
    assert_eq!(s.values, plain.values);
}

#[test]
fn conventions_bom_crlf_quotes_trailing_line() {
    let text = "\u{feff}timestamp,\"cpu, %\",mem,label\r\n\"2024-01-01 00:00\",1.5,2,0\r\n2024-01-01 00:01, 3 ,\"4\",1.0\r\n\r\n";
    let s = read_csv_bytes("m.csv", text.as_bytes(), &CsvOptions::default()).unwrap();
    assert_eq!(s.columns, vec!["cpu, %".to_string(), "mem".to_string()]);
    assert_eq!(s.values, vec![1.5, 2.0, 3.0, 4.0]);
    assert_eq!(s.labels, Some(vec![0, 1]));
    assert_eq!(s.timestamps.as_ref().unwrap()[0], "2024-01-01 00:00");
    assert_eq!(s.n_rows, 2);
    assert_eq!(s.train_end, 2, "no name pattern → all rows");
}

#[test]
fn default_roles_and_column_selection() {
    let text = "Timestamp,b,a,Label\nt0,1,2,0\nt1,3,4,1\n";
    let s = read_csv_bytes("m.csv", text.as_bytes(), &CsvOptions::default()).unwrap();
    assert_eq!(s.columns, vec!["b", "a"]);
    assert!(s.timestamps.is_some());
    let o = CsvOptions { columns: Some(vec!["a".into(), "b".into()]), train_end: Some(1), ..Default::default() };
    let s = read_csv_bytes("m.csv", text.as_bytes(), &o).unwrap();
    assert_eq!(s.columns, vec!["a", "b"]);
    assert_eq!(s.values, vec![2.0, 1.0, 4.0, 3.0]);
    assert_eq!(s.train_end, 1);
    assert_eq!(s.train_values(), &[2.0, 1.0]);
    // Explicit label column; `Label` then is an ordinary feature.
    let o =
        CsvOptions { label_column: Some("b".into()), timestamp_column: Some("Timestamp".into()), ..Default::default() };
    let s = read_csv_bytes("m.csv", b"Timestamp,b,a,Label\nt0,1,2,0\nt1,0,4,1\n", &o).unwrap();
    assert_eq!(s.columns, vec!["a", "Label"]);
    assert_eq!(s.labels, Some(vec![1, 0]));
    assert_eq!(s.values, vec![2.0, 0.0, 4.0, 1.0]);
    // No label column at all.
    let s = read_csv_bytes("m.csv", b"x\n1\n2\n", &CsvOptions::default()).unwrap();
    assert!(s.labels.is_none() && s.timestamps.is_none());
    assert_eq!(s.anomaly_ratio(), None);
    // Empty header name → pandas' `Unnamed: j`.
    let s = read_csv_bytes("m.csv", b",x\n0,1\n1,2\n", &CsvOptions::default()).unwrap();
    assert_eq!(s.columns, vec!["Unnamed: 0", "x"]);
}
