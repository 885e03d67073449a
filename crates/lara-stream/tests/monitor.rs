//! The online monitor's contract: causality, batch invariance, snapshots, the life cycle on
//! synthetic changes, and bad input.

mod common;

use common::*;
use lara_stream::{Monitor, MonitorConfig, Policy, State, StreamError};

const W: usize = 20;

/// Normal until row 600, then the level moves by 3 and stays.
fn shifted(n: usize) -> Vec<Vec<f32>> {
    rows(n, 7, |t| if t >= 600 { 3.0 } else { 0.0 })
}

#[test]
fn results_are_causal() {
    let det = model(W, 800);
    let a = shifted(1000);
    let mut b = a.clone();
    let cut = 700;
    for r in &mut b[cut..] {
        r[0] += 10.0;
        r[1] -= 4.0;
    }
    let (ra, _) = run(&mut Monitor::new(det.clone(), config()).unwrap(), &a, 33);
    let (rb, _) = run(&mut Monitor::new(det, config()).unwrap(), &b, 33);
    assert!(same(&ra[..cut], &rb[..cut]), "rows before the change must not move");
    assert!(!same(&ra[cut..], &rb[cut..]), "the test must be able to fail");
}

#[test]
fn batches_of_any_size_give_identical_results() {
    let det = model(W, 800);
    let data = shifted(1400);
    let (r1, e1) = run(&mut Monitor::new(det.clone(), config()).unwrap(), &data, 1);
    assert!(e1.iter().any(|e| e.kind == "adapt"), "the run must include an adaptation: {e1:?}");
    for batch in [7, 64, 1400] {
        let (r, e) = run(&mut Monitor::new(det.clone(), config()).unwrap(), &data, batch);
        assert!(same(&r1, &r), "batch {batch}");
        assert_eq!(timeless(&e1), timeless(&e), "batch {batch}");
    }
}

#[test]
fn a_restored_snapshot_continues_identically() {
    let det = model(W, 800);
    let data = shifted(1400);
    let (full, _) = run(&mut Monitor::new(det.clone(), config()).unwrap(), &data, 50);
    // Snapshots in the middle of every phase: normal, suspect/collecting, adapted, later.
    for cut in [300usize, 640, 700, 735, 1000] {
        let mut m = Monitor::new(det.clone(), config()).unwrap();
        let (a, _) = run(&mut m, &data[..cut], 50);
        let bytes = m.snapshot().unwrap();
        let mut restored = Monitor::restore(&bytes, Some(det.clone())).unwrap();
        let (b, _) = run(&mut restored, &data[cut..], 50);
        let mut all = a;
        all.extend(b);
        assert!(same(&full, &all), "cut at {cut}");
    }
    // A shared base is referenced, not copied, and must be the right one.
    let m = Monitor::new(det.clone(), config()).unwrap();
    let bytes = m.snapshot().unwrap();
    assert!(bytes.len() < 64 * 1024, "snapshot on a shared base: {} B", bytes.len());
    assert!(matches!(Monitor::restore(&bytes, None), Err(StreamError::Snapshot(_))));
    let other = model(W, 700);
    assert!(matches!(Monitor::restore(&bytes, Some(other)), Err(StreamError::Snapshot(_))));
    assert!(Monitor::restore(&bytes[..bytes.len() - 3], Some(det.clone())).is_err());
    assert!(Monitor::restore(b"garbage", Some(det)).is_err());
}

#[test]
fn warm_up_training_replays_deterministically_and_snapshots_carry_the_model() {
    let data = shifted(1200);
    let cfg = MonitorConfig {
        warmup_rows: 500,
        fit: Some(lara_vae::FitOptions {
            window: W,
            train: lara_vae::TrainConfig { hidden: 32, latent: 4, max_steps: 100, ..Default::default() },
            ..Default::default()
        }),
        ..config()
    };
    let go = |batch| {
        let mut m = Monitor::untrained(vec!["a".into(), "b".into()], cfg.clone()).unwrap();
        let mut out = Vec::new();
        for c in data[..700].chunks(batch) {
            out.extend(m.push(c).unwrap());
            for s in m.take_warmup_scores() {
                let t = s.row as usize;
                out[t] = s;
            }
        }
        (m, out)
    };
    let (m1, r1) = go(100);
    let (_, r2) = go(13);
    assert!(same(&r1, &r2));
    assert!(r1[..500].iter().all(|s| s.state == State::Warmup && s.score.is_finite() && s.model_version == 1));
    // The snapshot of a self-trained monitor carries its model.
    let bytes = m1.snapshot().unwrap();
    let mut a = Monitor::restore(&bytes, None).unwrap();
    let mut b = m1.clone();
    let (ra, _) = run(&mut a, &data[700..], 40);
    let (rb, _) = run(&mut b, &data[700..], 40);
    assert!(same(&ra, &rb));
}

#[test]
fn a_level_shift_floods_a_static_model_and_the_monitor_recovers() {
    let det = model(W, 800);
    let data = shifted(1600);
    let static_cfg = MonitorConfig { policy: Policy::Static, ..config() };
    let (rs, _) = run(&mut Monitor::new(det.clone(), static_cfg).unwrap(), &data, 100);
    let flood = rs[700..].iter().filter(|s| s.is_anomaly).count() as f64 / 900.0;
    assert!(flood > 0.5, "the static model should flag the new level: {flood}");

    let cfg = config();
    let (ro, ev) = run(&mut Monitor::new(det, cfg.clone()).unwrap(), &data, 100);
    let adapt = ev.iter().find(|e| e.kind == "adapt").expect("an adaptation");
    let [a, t] = adapt.rows.unwrap();
    assert!(a >= 600 && t < 600 + (cfg.slots + W + 20) as u64, "adapted on {a}..{t}");
    assert!(ev.iter().any(|e| e.kind == "validate"), "{ev:?}");
    // Recovered within K + one window (+ the change test's delay) of the change.
    let after = 600 + cfg.slots + W + 20;
    let rate = ro[after..].iter().filter(|s| s.is_anomaly).count() as f64 / (1600 - after) as f64;
    assert!(rate < 0.02, "alarm rate after adaptation {rate}");
    // The transition keeps its alarms.
    assert!(ro[600..640].iter().any(|s| s.is_anomaly));
    assert!(ro[700..].iter().all(|s| s.model_version >= 2));
    // p_anomaly is a probability and agrees with the threshold.
    for s in &ro {
        assert!((0.0..=1.0).contains(&s.p_anomaly));
        assert_eq!(s.is_anomaly, s.score > s.threshold);
    }
}

#[test]
fn a_short_incident_is_alarmed_and_not_absorbed() {
    let det = model(W, 800);
    let data = rows(1200, 9, |t| if (700..715).contains(&t) { 4.0 } else { 0.0 });
    let (r, ev) = run(&mut Monitor::new(det, config()).unwrap(), &data, 25);
    assert!(r[700..715].iter().any(|s| s.is_anomaly), "the incident must be alarmed");
    assert!(!ev.iter().any(|e| e.kind == "adapt" || e.kind == "reselect"), "absorbed: {ev:?}");
    assert!(r.iter().all(|s| s.model_version == 1));
    assert!(r[760..].iter().filter(|s| s.is_anomaly).count() < 10);
}

#[test]
fn a_return_to_an_earlier_pattern_reselects_it() {
    let det = model(W, 800);
    // Normal, new level from 500, back to the original level from 1100.
    let data = rows(1700, 11, |t| if (500..1100).contains(&t) { 3.0 } else { 0.0 });
    let (r, ev) = run(&mut Monitor::new(det, config()).unwrap(), &data, 64);
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    let first_adapt = kinds.iter().position(|k| *k == "adapt").expect("adapt to the new level");
    let reselect = ev.iter().find(|e| e.kind == "reselect").unwrap_or_else(|| panic!("no re-selection: {kinds:?}"));
    assert!(reselect.row > 1100 && first_adapt < kinds.len());
    assert!(reselect.detail.contains("pattern 1"), "{}", reselect.detail);
    assert_eq!(ev.iter().filter(|e| e.kind == "adapt").count(), 1, "{kinds:?}");
    let late = &r[1250..];
    assert!(late.iter().filter(|s| s.is_anomaly).count() < late.len() / 50);
}

#[test]
fn bad_rows_are_refused_and_change_nothing() {
    let det = model(W, 800);
    let data = shifted(300);
    let mut m = Monitor::new(det, config()).unwrap();
    run(&mut m, &data[..200], 50);
    let before = m.snapshot().unwrap();
    let mut bad = data[200..210].to_vec();
    bad[3][1] = f32::NAN;
    let e = m.push(&bad).unwrap_err().to_string();
    assert!(e.contains("row 4") && e.contains("\"b\""), "{e}");
    let mut short = data[200..205].to_vec();
    short[2].pop();
    let e = m.push(&short).unwrap_err().to_string();
    assert!(e.contains("row 3") && e.contains("2 columns"), "{e}");
    let mut inf = data[200..201].to_vec();
    inf[0][0] = f32::INFINITY;
    assert!(m.push(&inf).is_err());
    assert_eq!(m.snapshot().unwrap(), before, "a refused batch must leave the state as it was");
    assert_eq!(m.rows_seen(), 200);
}

#[test]
fn bad_settings_are_refused() {
    let det = model(W, 800);
    for cfg in [
        MonitorConfig { slots: 0, ..config() },
        MonitorConfig { change: lara_stream::ChangeTest { level: 1.5, ..Default::default() }, ..config() },
        MonitorConfig { validate_rows: 0, ..config() },
    ] {
        assert!(matches!(Monitor::new(det.clone(), cfg), Err(StreamError::Config(_))));
    }
    assert!(Monitor::untrained(vec!["a".into()], MonitorConfig { warmup_rows: 3, ..config() }).is_err());
}

#[test]
fn cold_start_on_a_shared_base_adapts_from_the_first_slots() {
    let det = model(W, 800);
    // A new entity whose normal level differs from the base model's entity.
    let data = rows(800, 21, |_| 2.5);
    let cfg = MonitorConfig { cold_start: true, ..config() };
    let (r, ev) = run(&mut Monitor::new(det.clone(), cfg.clone()).unwrap(), &data, 16);
    // The row that completes the slots shows the state after the decision.
    assert!(r[..cfg.slots - 1].iter().all(|s| s.state == State::Warmup));
    assert_eq!(r[cfg.slots - 1].state, State::Adapted);
    let first = &ev[0];
    assert_eq!((first.kind.as_str(), first.row), ("adapt", cfg.slots as u64 - 1), "{ev:?}");
    assert!(ev.iter().any(|e| e.kind == "validate"), "{ev:?}");
    let late = &r[200..];
    assert!(late.iter().filter(|s| s.is_anomaly).count() < late.len() / 50);
    // Without the cold start the same base model floods.
    let (r0, _) = run(&mut Monitor::new(det, MonitorConfig { policy: Policy::Static, ..config() }).unwrap(), &data, 16);
    assert!(r0[200..].iter().filter(|s| s.is_anomaly).count() > 300);
}

#[test]
fn a_full_retrain_swaps_the_model_without_a_gap() {
    let det = model(W, 800);
    let data = shifted(1500);
    let cfg = MonitorConfig {
        policy: Policy::AdaptRetrain,
        retrain: lara_stream::RetrainPolicy::AfterPatternRows(400),
        fit: Some(lara_vae::FitOptions {
            window: W,
            train: lara_vae::TrainConfig { hidden: 32, latent: 4, max_steps: 100, ..Default::default() },
            ..Default::default()
        }),
        ..config()
    };
    let mut m = Monitor::new(det, cfg).unwrap();
    let (r, ev) = run(&mut m, &data, 50);
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    let retrain = ev.iter().find(|e| e.kind == "retrain").unwrap_or_else(|| panic!("no retrain: {kinds:?}"));
    let [a, b] = retrain.rows.unwrap();
    assert_eq!(b - a + 1, 400, "{retrain:?}");
    assert!(a >= 600, "trained on the new pattern only: {retrain:?}");
    assert_eq!(r.len(), 1500);
    assert!(r.iter().all(|s| s.score.is_finite()), "every row is scored");
    let v = retrain.model_version;
    assert!(r[b as usize + 1..].iter().all(|s| s.model_version == v));
    assert!(r[b as usize + 1..].iter().filter(|s| s.is_anomaly).count() < 20);
    // The retrained model belongs to the monitor: its snapshot carries it.
    let snap = m.snapshot().unwrap();
    assert!(Monitor::restore(&snap, None).is_ok());
}

#[test]
fn an_operator_can_adapt_now_and_roll_back() {
    let det = model(W, 800);
    let data = rows(900, 13, |t| if t >= 500 { 3.0 } else { 0.0 });
    let mut m = Monitor::new(det.clone(), MonitorConfig { policy: Policy::Static, ..config() }).unwrap();
    assert!(m.rollback().is_err(), "nothing to roll back to yet");
    run(&mut m, &data[..560], 40);
    assert_eq!(m.version(), 1);
    m.adapt_now().unwrap();
    let ev = m.drain_events();
    assert_eq!(ev.len(), 1);
    assert!(ev[0].kind == "adapt" && ev[0].detail.ends_with("(requested)"), "{ev:?}");
    assert_eq!((m.version(), m.state()), (2, State::Adapted));
    assert!(m.adapt_now().is_err(), "one switch at a time");
    let (r, _) = run(&mut m, &data[560..700], 20);
    assert!(r.iter().all(|s| s.model_version == 2));
    m.rollback().unwrap();
    assert_eq!(m.drain_events()[0].kind, "rollback");
    assert_eq!((m.version(), m.state(), m.current().unwrap().id), (3, State::Normal, 1));
    // The state survives a snapshot.
    let bytes = m.snapshot().unwrap();
    let mut a = Monitor::restore(&bytes, Some(det)).unwrap();
    let (ra, _) = run(&mut a, &data[700..], 30);
    let (rb, _) = run(&mut m, &data[700..], 30);
    assert!(same(&ra, &rb));
}
