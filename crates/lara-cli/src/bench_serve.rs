//! `lara bench serve`: the real `lara serve` on loopback under concurrent clients, beside the
//! same scoring in process (what the HTTP layer and the store cost on top).

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use lara_core::Series;
use lara_stream::{Monitor, MonitorConfig};
use lara_vae::{Detector, FitOptions, TrainConfig};
use serde_json::json;

use crate::report::percentile;

const BENCH_SERVE_HELP: &str = "\
Starts this binary as `lara serve` on a free loopback port with a fresh store, uploads one
shared base model (trained here on a synthetic entity), creates --entities entities on it with
a LARA cold start, and has --clients threads post --rows-per-request rows per request, round
after round, to every entity. Each entity is its own synthetic series (a different level and
phase), so each one adapts from its first 40 rows: the run measures ingest with per-entity
adapters. The same pushes run in process, one thread, without HTTP or store (the scoring
cost alone). Then --idle more entities are created without rows, and the server's resident
memory is read before and after.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_SERVE_HELP)]
pub struct ServeBenchArgs {
    #[arg(long, default_value_t = 1000)]
    pub entities: usize,
    #[arg(long, default_value_t = 38)]
    pub columns: usize,
    #[arg(long, default_value_t = 50)]
    pub rows_per_request: usize,
    /// Timed requests per entity.
    #[arg(long, default_value_t = 4)]
    pub rounds: usize,
    /// Requests per entity before the timing starts (the cold start: LARA from the first 40
    /// rows and its validation), timed separately.
    #[arg(long, default_value_t = 2)]
    pub warm_rounds: usize,
    #[arg(long, default_value_t = 4)]
    pub clients: usize,
    /// Entities created without rows for the memory figure.
    #[arg(long, default_value_t = 10_000)]
    pub idle: usize,
    /// Window of the shared base model.
    #[arg(long, default_value_t = 100)]
    pub window: usize,
    /// Hidden width of the shared base model.
    #[arg(long, default_value_t = 256)]
    pub hidden: usize,
}

/// CPU seconds (user + system) the process `pid` has used.
fn cpu_seconds(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may contain spaces) in parentheses.
    let rest = s.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let (utime, stime): (f64, f64) = (f.get(11)?.parse().ok()?, f.get(12)?.parse().ok()?);
    // SAFETY: sysconf has no preconditions.
    let tick = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some((utime + stime) / tick.max(1.0))
}

/// Resident memory of process `pid` (MiB), from /proc.
pub(crate) fn rss_mib(pid: u32) -> Option<f64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<f64>().ok()? / 1024.0)
}

/// The benches' model: trained on 1500 rows of entity 0 of the synthetic fleet ([`row`]),
/// `m` columns, the given window and hidden width, at most 150 Adam steps.
pub(crate) fn synthetic_model(m: usize, window: usize, hidden: usize) -> Result<Detector> {
    let n_train = 1500;
    let vals: Vec<f32> = (0..n_train).flat_map(|t| row(0, t, m)).collect();
    let cols: Vec<String> = (0..m).map(|j| format!("c{j}")).collect();
    let series = Series::new(vals, n_train, cols, None, None, n_train)?;
    let fit = FitOptions {
        window,
        train: TrainConfig { hidden, max_steps: 150, ..TrainConfig::default() },
        ..FitOptions::default()
    };
    Ok(Detector::fit(&series, &fit, &mut |_| {})?)
}

/// Row `t` of synthetic entity `e` (`m` columns): a sine of period 25 per column (phase by
/// column), a level and a scale that differ by entity, a little deterministic noise.
pub(crate) fn row(e: usize, t: usize, m: usize) -> Vec<f32> {
    let (level, scale) = ((e % 7) as f32 * 0.5, 1.0 + (e % 3) as f32 * 0.2);
    (0..m)
        .map(|j| {
            let x = std::f32::consts::TAU * t as f32 / 25.0 + j as f32 * 0.3;
            scale * x.sin() + level + 0.02 * (((t * 31 + j * 17 + e * 7) % 13) as f32 - 6.0)
        })
        .collect()
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder().http_status_as_error(false).build().into()
}

fn send(a: &ureq::Agent, method: &str, url: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    let r = match method {
        "PUT" => a.put(url).send(body),
        _ => a.post(url).header("Content-Type", "application/json").send(body),
    }
    .with_context(|| format!("{method} {url}"))?;
    let st = r.status().as_u16();
    Ok((st, r.into_body().read_to_vec().unwrap_or_default()))
}

pub fn run(args: &ServeBenchArgs) -> Result<()> {
    let (m, n_e) = (args.columns, args.entities);
    if n_e == 0 || args.rows_per_request == 0 || args.rounds == 0 || args.clients == 0 {
        bail!("--entities, --rows-per-request, --rounds and --clients must be positive");
    }
    // The shared base model.
    eprintln!("training the shared base model ({m} columns, window {}) …", args.window);
    let base = Arc::new(synthetic_model(m, args.window, args.hidden)?);
    let model_bytes = base.to_bytes()?;

    // The scoring alone, in process, one thread (the same pushes for up to 100 entities).
    let _ = lara_vae::init_threads(1);
    let sample = n_e.min(100);
    let fp = lara_stream::model_fingerprint(&base)?;
    let cfg = MonitorConfig { cold_start: true, ..MonitorConfig::default() };
    let mut mons = Vec::with_capacity(sample);
    for _ in 0..sample {
        mons.push(Monitor::new_shared(base.clone(), fp.clone(), cfg.clone())?);
    }
    let push_rounds = |mons: &mut Vec<Monitor>, rounds: std::ops::Range<usize>| -> Result<f64> {
        let t0 = Instant::now();
        for (e, mon) in mons.iter_mut().enumerate() {
            for r in rounds.clone() {
                let rows: Vec<Vec<f32>> =
                    (0..args.rows_per_request).map(|i| row(e, r * args.rows_per_request + i, m)).collect();
                mon.push(&rows)?;
            }
        }
        Ok((mons.len() * rounds.len() * args.rows_per_request) as f64 / t0.elapsed().as_secs_f64())
    };
    let inproc_warm = push_rounds(&mut mons, 0..args.warm_rounds)?;
    let me = std::process::id();
    let cpu_in0 = cpu_seconds(me).unwrap_or(0.0);
    let inproc = push_rounds(&mut mons, args.warm_rounds..args.warm_rounds + args.rounds)?;
    // CPU time, not wall time: other load on the machine does not count.
    let scoring_cpu = cpu_seconds(me).unwrap_or(0.0) - cpu_in0;
    let scoring_us = 1e6 * scoring_cpu / (sample * args.rounds * args.rows_per_request) as f64;
    let state_kib = mons.iter().map(|m| m.state_bytes_without_rows()).sum::<usize>() as f64 / 1024.0 / sample as f64;
    drop(mons);

    // The server.
    let dir = std::env::temp_dir().join(format!("lara-bench-serve-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let exe = std::env::current_exe()?;
    let mut child = Command::new(exe)
        .args(["serve", "--addr", "127.0.0.1:0", "--data-dir", dir.to_str().unwrap_or("."), "--threads"])
        .arg(args.clients.to_string())
        .stdout(Stdio::piped())
        .spawn()
        .context("starting lara serve")?;
    let pid = child.id();
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("server stdout")?).read_line(&mut line)?;
    let base_url = line.trim().strip_prefix("listening on ").context("server did not start")?.to_string();
    let result = (|| -> Result<()> {
        let a = agent();
        let (st, b) = send(&a, "PUT", &format!("{base_url}/v1/models/base/file"), &model_bytes)?;
        if st != 200 {
            bail!("upload: {st} {}", String::from_utf8_lossy(&b));
        }
        let rss_start = rss_mib(pid).unwrap_or(0.0);
        let t = Instant::now();
        for e in 0..n_e {
            let (st, b) = send(&a, "PUT", &format!("{base_url}/v1/entities/e{e}"), br#"{"base": "base"}"#)?;
            if st != 201 {
                bail!("create e{e}: {st} {}", String::from_utf8_lossy(&b));
            }
        }
        let create_s = t.elapsed().as_secs_f64();
        let ingest = |rounds: std::ops::Range<usize>| -> Result<(f64, Vec<f64>)> {
            let lat = Arc::new(Mutex::new(Vec::new()));
            let t = Instant::now();
            std::thread::scope(|s| -> Result<()> {
                let mut hs = Vec::new();
                for c in 0..args.clients {
                    let (lat, base_url, rounds) = (lat.clone(), base_url.clone(), rounds.clone());
                    hs.push(s.spawn(move || -> Result<()> {
                        let a = agent();
                        for r in rounds {
                            for e in (c..n_e).step_by(args.clients) {
                                let rows: Vec<Vec<f32>> = (0..args.rows_per_request)
                                    .map(|i| row(e, r * args.rows_per_request + i, m))
                                    .collect();
                                let body = json!({ "rows": rows }).to_string();
                                let t = Instant::now();
                                let url = format!("{base_url}/v1/entities/e{e}/points");
                                let (st, b) = send(&a, "POST", &url, body.as_bytes())?;
                                if st != 200 {
                                    bail!("ingest e{e}: {st} {}", String::from_utf8_lossy(&b));
                                }
                                lat.lock().expect("lock").push(t.elapsed().as_secs_f64() * 1e3);
                            }
                        }
                        Ok(())
                    }));
                }
                for h in hs {
                    h.join().map_err(|_| anyhow::anyhow!("client panicked"))??;
                }
                Ok(())
            })?;
            let rows = (n_e * rounds.len() * args.rows_per_request) as f64;
            let l = lat.lock().expect("lock").clone();
            Ok((rows / t.elapsed().as_secs_f64(), l))
        };
        let (warm_rps, _) = ingest(0..args.warm_rounds)?;
        let cpu0 = cpu_seconds(pid).unwrap_or(0.0);
        let (rps, mut l) = ingest(args.warm_rounds..args.warm_rounds + args.rounds)?;
        let server_cpu = cpu_seconds(pid).unwrap_or(0.0) - cpu0;
        let steady_rows = (n_e * args.rounds * args.rows_per_request) as f64;
        let server_us = 1e6 * server_cpu / steady_rows;
        let rss_busy = rss_mib(pid).unwrap_or(0.0);
        let metrics = a.get(format!("{base_url}/metrics")).call()?.into_body().read_to_string()?;
        let adaptations = metrics
            .lines()
            .find_map(|l| l.strip_prefix("lara_adaptations_total "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0);
        let (p50, p99) = (percentile(&mut l, 0.5), percentile(&mut l, 0.99));
        // Idle entities.
        let t = Instant::now();
        for e in 0..args.idle {
            let (st, _) = send(&a, "PUT", &format!("{base_url}/v1/entities/idle{e}"), br#"{"base": "base"}"#)?;
            if st != 201 {
                bail!("create idle{e}: {st}");
            }
        }
        let idle_s = t.elapsed().as_secs_f64();
        let rss_idle = rss_mib(pid).unwrap_or(0.0);
        println!(
            "lara serve on loopback: {n_e} entities, {m} columns, window {}, one shared base model + per-entity adapters (cold start); {} rows per request, {} clients",
            args.window, args.rows_per_request, args.clients
        );
        println!(
            "  cold start ({} requests per entity: LARA from the first 40 rows, validation): {warm_rps:.0} rows/s through HTTP + store; {inproc_warm:.0} rows/s in process (one thread)",
            args.warm_rounds
        );
        println!(
            "  steady ingest ({} requests per entity): {rps:.0} rows/s through HTTP + store, request latency p50 {p50:.1} ms, p99 {p99:.1} ms; {inproc:.0} rows/s in process (one thread, no HTTP, no store)",
            args.rounds
        );
        // /proc counts CPU time in ticks of 10 ms: a split from fewer than 10 ticks means nothing.
        if scoring_cpu >= 0.1 && server_cpu >= 0.1 {
            println!(
                "  server CPU per row (steady): {server_us:.0} µs, of which scoring {scoring_us:.0} µs (CPU in process) and HTTP + JSON + store {:.0} µs ({:.2}× the scoring); the clients run on the same 2 cores",
                server_us - scoring_us,
                (server_us - scoring_us) / scoring_us
            );
        } else {
            println!("  server CPU per row: run too short to time in CPU ticks (use more --entities or --rounds)");
        }
        println!(
            "  entity creation {:.1} ms each; {adaptations} adaptations in all; monitor state without rows {state_kib:.1} KiB per entity; server RSS {rss_start:.0} MiB empty, {rss_busy:.0} MiB after the run",
            1e3 * create_s / n_e as f64
        );
        if args.idle > 0 {
            println!(
                "  {} idle entities more: RSS {rss_idle:.0} MiB ({:.1} KiB each); created in {idle_s:.1} s",
                args.idle,
                (rss_idle - rss_busy) * 1024.0 / args.idle as f64
            );
        }
        Ok(())
    })();
    let _ = child.kill();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    result
}
