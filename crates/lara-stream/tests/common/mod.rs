//! Synthetic entities and small models shared by the monitor tests.

#![allow(dead_code)]

use std::sync::Arc;

use lara_core::Series;
use lara_stream::{Event, Monitor, MonitorConfig, Scored};
use lara_vae::{Detector, FitOptions, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Two correlated channels: a sine of period 25 plus noise; `level(t)` is added to channel
/// `a` and subtracted (×0.5) from channel `b`.
pub fn rows(n: usize, seed: u64, level: impl Fn(usize) -> f32) -> Vec<Vec<f32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|t| {
            let s = (std::f32::consts::TAU * t as f32 / 25.0).sin();
            let l = level(t);
            let na: f32 = rng.gen_range(-0.1..0.1);
            let nb: f32 = rng.gen_range(-0.1..0.1);
            vec![s + l + na, 0.5 * s - 0.5 * l + nb]
        })
        .collect()
}

pub fn series(rows: &[Vec<f32>]) -> Series {
    let values: Vec<f32> = rows.iter().flatten().copied().collect();
    Series::new(values, rows.len(), vec!["a".into(), "b".into()], None, None, rows.len()).unwrap()
}

/// A small, fast detector (window `w`) trained on `n` normal rows.
pub fn model(w: usize, n: usize) -> Arc<Detector> {
    let opts = FitOptions {
        window: w,
        train: TrainConfig { hidden: 32, latent: 4, max_steps: 150, epochs: 20, seed: 3, ..TrainConfig::default() },
        ..FitOptions::default()
    };
    Arc::new(Detector::fit(&series(&rows(n, 1, |_| 0.0)), &opts, &mut |_| {}).unwrap())
}

/// Pushes `rows` in batches of `batch`; returns the results and the events.
pub fn run(mon: &mut Monitor, rows: &[Vec<f32>], batch: usize) -> (Vec<Scored>, Vec<Event>) {
    let mut out = Vec::new();
    let mut ev = Vec::new();
    for c in rows.chunks(batch) {
        out.extend(mon.push(c).unwrap());
        ev.extend(mon.drain_events());
    }
    (out, ev)
}

/// Events without their wall times (the only non-deterministic field).
pub fn timeless(ev: &[Event]) -> Vec<Event> {
    ev.iter()
        .cloned()
        .map(|mut e| {
            e.elapsed_ms = 0.0;
            e
        })
        .collect()
}

pub fn config() -> MonitorConfig {
    MonitorConfig::default()
}

/// Scored rows compared bit for bit (NaN-aware).
pub fn same(a: &[Scored], b: &[Scored]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.row == y.row
                && x.score.to_bits() == y.score.to_bits()
                && x.threshold.to_bits() == y.threshold.to_bits()
                && x.p_anomaly.to_bits() == y.p_anomaly.to_bits()
                && x.is_anomaly == y.is_anomaly
                && x.state == y.state
                && x.model_version == y.model_version
                && x.top_dims == y.top_dims
        })
}
