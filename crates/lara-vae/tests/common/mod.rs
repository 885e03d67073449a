//! The adaptation toy shared by the integration tests: two correlated channels
//! (`a = sin(0.2 t)`, `b = 0.5 a + cos(0.05 t)`, small noise); `level` and `scale` move
//! channel `b` (a normal-pattern change).

use lara_core::Series;
use lara_vae::{Detector, FitOptions};

pub fn toy_series(n: usize, train_end: usize, level: f32, scale: f32, seed: u32) -> Series {
    let mut values = Vec::with_capacity(n * 2);
    let mut s = seed.wrapping_mul(2_654_435_761).max(1);
    for t in 0..n {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        let noise = (s as f32 / u32::MAX as f32 - 0.5) * 0.1;
        let a = (t as f32 * 0.2).sin();
        values.push(a + noise);
        values.push(level + scale * (0.5 * a + (t as f32 * 0.05).cos()) + noise);
    }
    Series::new(values, n, vec!["a".into(), "b".into()], None, None, train_end).unwrap()
}

/// A small window-20 detector trained on 1500 rows of the unchanged toy.
pub fn toy_detector() -> Detector {
    toy_detector_with(None)
}

/// The toy detector with a given per-channel normalisation (`None`: scores are the rows' NLL
/// in nats, the unit the tests' margins are written in).
pub fn toy_detector_with(channel_quantile: Option<f64>) -> Detector {
    let mut opts = FitOptions { window: 20, channel_quantile, ..FitOptions::default() };
    opts.train.max_steps = 150;
    opts.train.hidden = 64;
    Detector::fit(&toy_series(1500, 1500, 0.0, 1.0, 1), &opts, &mut |_| {}).unwrap()
}
