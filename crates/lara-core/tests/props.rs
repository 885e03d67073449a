//! Property tests: readers never panic; scalers invert and stay finite; windows cover rows.

use proptest::prelude::*;

use lara_core::{read_csv_bytes, read_scores_bytes, CsvOptions, MissingPolicy, Scaler, ScalerKind, Series, Windows};

fn policy() -> impl Strategy<Value = MissingPolicy> {
    prop_oneof![
        Just(MissingPolicy::Error),
        Just(MissingPolicy::Ffill),
        Just(MissingPolicy::Zero),
        Just(MissingPolicy::Keep),
    ]
}

fn kind() -> impl Strategy<Value = ScalerKind> {
    prop_oneof![Just(ScalerKind::ZScore), Just(ScalerKind::MinMax), Just(ScalerKind::Robust)]
}

/// CSV-ish text: a header of short names, then rows of cells drawn from numbers, missing
/// spellings, junk, quotes and separators, with occasionally ragged rows and CRLF.
fn csvish() -> impl Strategy<Value = String> {
    let cell = prop_oneof![
        4 => (-1e6f64..1e6).prop_map(|v| v.to_string()),
        2 => prop_oneof![Just("0"), Just("1"), Just("1.0"), Just("2")].prop_map(String::from),
        1 => prop_oneof![Just(""), Just("nan"), Just("NaN"), Just("inf"), Just("-inf"), Just("1e39")].prop_map(String::from),
        1 => "[a-z\"\r\n,;. \\-]{0,4}",
    ];
    let name =
        prop_oneof![Just("Label".to_string()), Just("timestamp".to_string()), Just("label".to_string()), "[a-c]{1,2}",];
    (
        prop::collection::vec(name, 0..5),
        prop::collection::vec(prop::collection::vec(cell, 0..6), 0..8),
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(|(h, rows, crlf, bom)| {
            let nl = if crlf { "\r\n" } else { "\n" };
            let mut s = String::new();
            if bom {
                s.push('\u{feff}');
            }
            s.push_str(&h.join(","));
            for r in rows {
                s.push_str(nl);
                s.push_str(&r.join(","));
            }
            s
        })
}

fn opts() -> impl Strategy<Value = CsvOptions> {
    (
        policy(),
        proptest::option::of(0usize..10),
        proptest::option::of(prop::collection::vec("[a-c]{1,2}", 0..3)),
        proptest::option::of(prop_oneof![Just("a".to_string()), Just("Label".to_string())]),
    )
        .prop_map(|(missing, train_end, columns, label_column)| CsvOptions {
            missing,
            train_end,
            columns,
            label_column,
            timestamp_column: None,
        })
}

/// Checks the invariants of a successfully read series.
fn check_series(s: &Series, o: &CsvOptions) {
    assert_eq!(s.values.len(), s.n_rows * s.n_cols());
    assert!(s.n_cols() >= 1 && s.n_rows >= 1);
    assert!(s.train_end <= s.n_rows);
    if let Some(l) = &s.labels {
        assert_eq!(l.len(), s.n_rows);
        assert!(l.iter().all(|&v| v <= 1));
    }
    if o.missing != MissingPolicy::Keep {
        assert_eq!(s.non_finite_count(), 0);
    }
    // A series built by the reader passes `Series::new`'s checks.
    let rebuilt =
        Series::new(s.values.clone(), s.n_rows, s.columns.clone(), s.timestamps.clone(), s.labels.clone(), s.train_end);
    assert!(rebuilt.is_ok(), "{rebuilt:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn read_csv_bytes_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..256), o in opts(), gz in any::<bool>()) {
        let name = if gz { "x_tr_3_1st_4.csv.gz" } else { "x_tr_3_1st_4.csv" };
        if let Ok(s) = read_csv_bytes(name, &bytes, &o) {
            check_series(&s, &o);
        }
        let mut magic = vec![0x1f, 0x8b];
        magic.extend_from_slice(&bytes);
        let _ = read_csv_bytes("y.csv", &magic, &o);
    }

    #[test]
    fn read_csv_bytes_never_panics_on_csvish(text in csvish(), o in opts()) {
        match read_csv_bytes("data_tr_2_1st_3.csv", text.as_bytes(), &o) {
            Ok(s) => check_series(&s, &o),
            Err(e) => prop_assert!(e.to_string().starts_with("data_tr_2_1st_3.csv"), "{}", e),
        }
    }

    #[test]
    fn read_scores_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256), text in csvish(), n in proptest::option::of(0usize..8)) {
        let _ = read_scores_bytes("s.txt", &bytes, n);
        if let Ok(v) = read_scores_bytes("s.csv", text.as_bytes(), n) {
            prop_assert!(v.iter().all(|x| x.is_finite()));
            if let Some(n) = n { prop_assert_eq!(v.len(), n); }
        }
        let numbers: String = bytes.iter().map(|b| format!("{}\n", *b as f64 / 7.0)).collect();
        let v = read_scores_bytes("s.txt", numbers.as_bytes(), None);
        prop_assert_eq!(v.map(|v| v.len()).unwrap_or(0), bytes.len());
    }

    #[test]
    fn scaler_inverse_is_identity(
        n_cols in 1usize..5,
        rows in prop::collection::vec(prop::collection::vec(-1e4f32..1e4, 4), 1..40),
        k in kind(),
    ) {
        let values: Vec<f32> = rows.iter().flat_map(|r| r[..n_cols].iter().copied()).collect();
        let s = Scaler::fit_rows(&values, n_cols, k);
        prop_assert_eq!(s.offset.len(), n_cols);
        prop_assert!(s.scale.iter().all(|&v| v.is_finite() && v > 0.0));
        let mut w = values.clone();
        s.transform(&mut w);
        prop_assert!(w.iter().all(|v| v.is_finite()));
        s.inverse_transform(&mut w);
        for (a, b) in values.iter().zip(&w) {
            prop_assert!((a - b).abs() <= 1e-3 * (1.0 + a.abs()), "{} vs {}", a, b);
        }
    }

    #[test]
    fn scaler_constant_columns_are_finite(c in prop::num::f32::NORMAL | prop::num::f32::ZERO, n in 1usize..30, k in kind()) {
        let values = vec![c; n * 2];
        let s = Scaler::fit_rows(&values, 2, k);
        prop_assert_eq!(&s.scale, &vec![1.0, 1.0]);
        let mut w = values.clone();
        s.transform(&mut w);
        prop_assert!(w.iter().all(|&v| v == 0.0), "{:?}", w);
    }

    #[test]
    fn scaler_fit_never_nan(values in prop::collection::vec(any::<f32>(), 0..40), n_cols in 1usize..4, k in kind()) {
        let s = Scaler::fit_rows(&values, n_cols, k);
        prop_assert!(s.offset.iter().all(|v| v.is_finite()));
        prop_assert!(s.scale.iter().all(|v| v.is_finite() && *v > 0.0));
    }

    #[test]
    fn windows_cover_all_rows(n_rows in 1usize..60, n_cols in 1usize..4, len in 1usize..60, stride in 1usize..20) {
        let values = vec![0.0f32; n_rows * n_cols];
        let plain = Windows::new(&values, n_cols, len, stride);
        let cover = Windows::covering(&values, n_cols, len, stride);
        if len > n_rows {
            prop_assert!(plain.is_err() && cover.is_err());
            return Ok(());
        }
        if stride > len {
            prop_assert!(cover.is_err());
            prop_assert_eq!(plain.unwrap().count(), (n_rows - len) / stride + 1);
            return Ok(());
        }
        let (plain, cover) = (plain.unwrap(), cover.unwrap());
        prop_assert_eq!(plain.count(), (n_rows - len) / stride + 1);
        let mut covered = vec![false; n_rows];
        let starts: Vec<usize> = cover.starts().collect();
        prop_assert_eq!(starts.len(), cover.count());
        for (i, w) in cover.iter().enumerate() {
            let s = cover.start(i);
            prop_assert_eq!(w.len(), len * n_cols);
            prop_assert!(std::ptr::eq(w.as_ptr(), values[s * n_cols..].as_ptr()));
            if i > 0 { prop_assert!(s > starts[i - 1]); }
            covered[s..s + len].iter_mut().for_each(|c| *c = true);
        }
        prop_assert!(covered.iter().all(|&c| c));
        prop_assert_eq!(*starts.last().unwrap() + len, n_rows);
        // The covering grid equals the plain grid plus at most one tail window.
        prop_assert!(cover.count() - plain.count() <= 1);
        prop_assert_eq!(&starts[..plain.count()], &plain.starts().collect::<Vec<_>>()[..]);
    }
}

#[test]
fn scaler_serde_round_trip() {
    let s = Scaler::fit_rows(&[1.0, 2.0, 3.0, 5.0], 2, ScalerKind::Robust);
    let j = serde_json::to_string(&s).unwrap();
    assert!(j.contains("\"robust\""), "{j}");
    let back: Scaler = serde_json::from_str(&j).unwrap();
    assert_eq!(back, s);
}
