//! Adaptation time (ruminate + both fits) for one window with a random 2-layer MLP VAE of
//! realistic cost (hidden 256, tanh, f32 GEMMs via matrixmultiply, single thread).
//! `cargo run -p lara-adapt --release --example adapt_speed [-- --quick]`

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::{normals, rng, MlpVae};
use lara_adapt::{adapt_with_report, AdaptConfig, Adapter, FrozenVae, RuminateBlock};

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let reps = if quick { 5 } else { 21 };
    println!("one adaptation window, d_z = 32, N = 256, hidden 256; median of {reps} runs (ms)");
    println!(
        "{:>4} {:>4} {:>4} {:>10} {:>10} {:>10} {:>10} {:>9} {:>8} {:>8}",
        "w", "m", "n", "ruminate", "adapt", "re-adapt", "decode256", "ESS", "bytes", "json"
    );
    for (w, m) in [(40usize, 38usize), (40, 55), (100, 38)] {
        let model = MlpVae::random(w, m, 32, 256, 1);
        let x: Vec<f32> = normals(&mut rng(2), w * m).into_iter().map(|v| (0.5 * v) as f32).collect();
        for n in [8usize, 16] {
            let cfg = AdaptConfig { n_lookalikes: n, ..AdaptConfig::default() };
            let block = cfg.ruminate_block();
            let (mut t_rum, mut t_all, mut t_dec, mut t_re) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
            let mut ess = 0.0;
            let mut bytes = 0;
            let mut json = 0;
            let z = vec![0.1f32; 256 * 32];
            for rep in 0..reps + 1 {
                let t0 = Instant::now();
                let _ = std::hint::black_box(model.decode_mean(&z, 256));
                let t1 = Instant::now();
                let _ = std::hint::black_box(RuminateBlock { ..block }.target_latents(&model, &x).unwrap());
                let t2 = Instant::now();
                let (a, report): (Adapter, _) = adapt_with_report(&model, &x, &cfg).unwrap();
                let t3 = Instant::now();
                // Chained: the ruminate block now runs through a non-identity M_x as well.
                let _ = std::hint::black_box(a.adapt_again(&model, &x, &cfg).unwrap());
                let t4 = Instant::now();
                if rep > 0 {
                    t_re.push((t4 - t3).as_secs_f64() * 1e3);
                    t_dec.push((t1 - t0).as_secs_f64() * 1e3);
                    t_rum.push((t2 - t1).as_secs_f64() * 1e3);
                    t_all.push((t3 - t2).as_secs_f64() * 1e3);
                }
                ess = report.mean_ess;
                bytes = a.param_bytes();
                json = serde_json::to_string(&a).map(|j| j.len()).unwrap_or(0);
            }
            println!(
                "{w:>4} {m:>4} {n:>4} {:>10.2} {:>10.2} {:>10.2} {:>10.2} {:>9.1} {:>8} {:>8}",
                median(t_rum),
                median(t_all),
                median(t_re),
                median(t_dec),
                ess,
                bytes,
                json
            );
        }
    }
}
