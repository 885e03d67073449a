//! `lara bench cluster`: `lara worker`s on a local NATS JetStream broker — rows/s with 1, 2, 3
//! workers, failover time after a `kill -9`, publish-to-result latency, per-entity cost.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Args;
use lara_cluster::futures_util::StreamExt;
use lara_cluster::natsd::{find_nats_server, NatsServer};
use lara_cluster::{tokio, Broker, EntitySpec};

use crate::bench_serve::{row, rss_mib, synthetic_model};
use crate::report::percentile;

const BENCH_CLUSTER_HELP: &str = "\
Needs nats-server (Debian: apt-get install nats-server; or $LARA_NATS_SERVER). For each worker
count it starts a fresh `nats-server -js` (file store in a temporary folder) on loopback, this
binary as that many `lara worker`s, waits until they share the partitions, publishes
--rows-per-entity rows for each of --entities synthetic entities (--rows-per-message rows per
points message, straight to the broker: no HTTP front) and times until every result is stored
in LARA_RESULTS. Rows/s counts rows scored and published, end to end through the broker.
Then, on the last cluster: the publish-to-result latency of single rows at a low rate, and the
failover: one worker is killed (SIGKILL) and a row is published every 50 ms to an entity of one
of its partitions, until a result for a row published after the kill arrives.
Every process shares this machine's cores with the broker: on 2 cores more workers cannot
add throughput, they only show that the protocol scales without loss.";

#[derive(Args, Debug)]
#[command(after_help = BENCH_CLUSTER_HELP)]
pub struct ClusterBenchArgs {
    #[arg(long, default_value_t = 200)]
    pub entities: usize,
    #[arg(long, default_value_t = 1000)]
    pub rows_per_entity: usize,
    #[arg(long, default_value_t = 10)]
    pub rows_per_message: usize,
    /// Worker counts to measure, comma-separated.
    #[arg(long, default_value = "1,2,3", value_delimiter = ',')]
    pub workers: Vec<usize>,
    #[arg(long, default_value_t = 16)]
    pub partitions: u32,
    #[arg(long, default_value_t = 2000)]
    pub lease_ttl_ms: u64,
    #[arg(long, default_value_t = 4)]
    pub columns: usize,
    /// Window of the model (the small, fast configuration of BENCHMARKS.md by default).
    #[arg(long, default_value_t = 40)]
    pub window: usize,
    #[arg(long, default_value_t = 128)]
    pub hidden: usize,
    /// Single-row messages for the latency figure.
    #[arg(long, default_value_t = 200)]
    pub latency_samples: usize,
}

struct Worker {
    child: Child,
    id: String,
}

impl Drop for Worker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_worker(url: &str, id: &str) -> Result<Worker> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["worker", "--nats", url, "--id", id, "--metrics-addr", "none"])
        .stdout(Stdio::piped())
        .spawn()
        .context("starting lara worker")?;
    let mut line = String::new();
    BufReader::new(child.stdout.take().context("worker stdout")?).read_line(&mut line)?;
    if line.is_empty() {
        bail!("lara worker {id} ended at start");
    }
    Ok(Worker { child, id: id.to_string() })
}

async fn owners(b: &Broker) -> Result<(usize, Vec<String>)> {
    let v = b.cluster_view().await?;
    let o = v["owners"].as_object().context("owners")?;
    let mut ws: Vec<String> = o.values().filter_map(|w| w.as_str().map(String::from)).collect();
    ws.sort();
    ws.dedup();
    Ok((o.len(), ws))
}

struct RunFigures {
    workers: usize,
    rows_per_s: f64,
    publish_s: f64,
    total_s: f64,
    rss_per_worker_mib: f64,
    rss_start_mib: f64,
    snapshot_bytes_per_entity: f64,
    points_bytes_per_row: f64,
    results_bytes_per_row: f64,
}

pub fn run(args: &ClusterBenchArgs) -> Result<()> {
    let bin = find_nats_server().context("nats-server not found (apt-get install nats-server, or set LARA_NATS_SERVER)")?;
    if args.entities == 0 || args.rows_per_entity == 0 || args.rows_per_message == 0 || args.workers.is_empty() {
        bail!("--entities, --rows-per-entity, --rows-per-message and --workers must be positive");
    }
    let m = args.columns;
    eprintln!("training the model ({m} columns, window {}, hidden {}) …", args.window, args.hidden);
    let model = Arc::new(synthetic_model(m, args.window, args.hidden)?);
    let model_bytes = model.to_bytes()?;
    // The same scoring in process, one thread: the cost without the broker.
    let _ = lara_vae::init_threads(1);
    let inproc = {
        let sample = args.entities.min(50);
        let t = Instant::now();
        for e in 0..sample {
            let mut mon = lara_stream::Monitor::new(model.clone(), lara_stream::MonitorConfig::default())?;
            for c in (0..args.rows_per_entity).step_by(args.rows_per_message) {
                let rows: Vec<Vec<f32>> =
                    (c..(c + args.rows_per_message).min(args.rows_per_entity)).map(|t| row(e, t, m)).collect();
                mon.push(&rows)?;
            }
        }
        (sample * args.rows_per_entity) as f64 / t.elapsed().as_secs_f64()
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let mut figures = Vec::new();
    let mut tail = None;
    for (k, &n_w) in args.workers.iter().enumerate() {
        let last = k + 1 == args.workers.len();
        let dir = std::env::temp_dir().join(format!("lara-bench-cluster-{}-{n_w}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let nats = NatsServer::start(&bin, &dir.join("js"))?;
        let url = nats.url();
        let b = rt.block_on(Broker::connect(
            &url,
            Some(args.partitions),
            Some(Duration::from_millis(args.lease_ttl_ms)),
        ))?;
        rt.block_on(b.put_model("m", &model_bytes))?;
        let spec = EntitySpec { model: "m".into(), cold_start: false, policy: "adapt".into(), slots: 40 };
        for e in 0..args.entities {
            rt.block_on(b.create_entity(&format!("e{e}"), &spec))?;
        }
        let mut ws = Vec::new();
        for i in 0..n_w {
            ws.push(start_worker(&url, &format!("w{i}"))?);
        }
        let t = Instant::now();
        loop {
            let (n, w) = rt.block_on(owners(&b))?;
            if n == args.partitions as usize && w.len() == n_w {
                break;
            }
            if t.elapsed() > Duration::from_secs(60) {
                bail!("{n_w} workers did not share the partitions within 60 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let rss_start: f64 = ws.iter().map(|w| rss_mib(w.child.id()).unwrap_or(0.0)).sum();
        // Publish everything (acks awaited in windows of 512), then wait for every result.
        let msgs_per_entity = args.rows_per_entity.div_ceil(args.rows_per_message);
        let expected = (args.entities * msgs_per_entity) as u64;
        let total_rows = (args.entities * args.rows_per_entity) as f64;
        let t0 = Instant::now();
        let publish_s = rt.block_on(async {
            let mut pending = Vec::new();
            for c in 0..msgs_per_entity {
                for e in 0..args.entities {
                    let a = c * args.rows_per_message;
                    let rows: Vec<Vec<f32>> =
                        (a..(a + args.rows_per_message).min(args.rows_per_entity)).map(|t| row(e, t, m)).collect();
                    let ent = format!("e{e}");
                    let subject = lara_cluster::points_subject(lara_cluster::partition_of(&ent, b.partitions), &ent);
                    let payload = serde_json::to_vec(&lara_cluster::PointsMsg::rows(rows))?;
                    pending.push(b.js.publish(subject, payload.into()).await?);
                    if pending.len() >= 512 {
                        for p in pending.drain(..) {
                            p.await?;
                        }
                    }
                }
            }
            for p in pending.drain(..) {
                p.await?;
            }
            anyhow::Ok(t0.elapsed().as_secs_f64())
        })?;
        loop {
            let n = rt.block_on(async { b.results.get_info().await.map(|i| i.state.messages) })?;
            if n >= expected {
                break;
            }
            if t0.elapsed() > Duration::from_secs(1800) {
                bail!("only {n} of {expected} results after 30 min");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let total_s = t0.elapsed().as_secs_f64();
        let rss_end: f64 = ws.iter().map(|w| rss_mib(w.child.id()).unwrap_or(0.0)).sum();
        let (pts, res, snaps) = rt.block_on(async {
            let p = b.points.get_info().await?.state.bytes;
            let r = b.results.get_info().await?.state.bytes;
            let s = b.js.get_stream(format!("KV_{}", lara_cluster::SNAPSHOTS)).await?.get_info().await?.state.bytes;
            anyhow::Ok((p, r, s))
        })?;
        figures.push(RunFigures {
            workers: n_w,
            rows_per_s: total_rows / total_s,
            publish_s,
            total_s,
            rss_per_worker_mib: rss_end / n_w as f64,
            rss_start_mib: rss_start / n_w as f64,
            snapshot_bytes_per_entity: snaps as f64 / args.entities as f64,
            points_bytes_per_row: pts as f64 / total_rows,
            results_bytes_per_row: res as f64 / total_rows,
        });
        eprintln!("{n_w} worker(s): {:.0} rows/s", total_rows / total_s);
        if last {
            tail = Some(latency_and_failover(&rt, &b, &mut ws, args)?);
        }
        drop(ws);
        drop(nats);
        let _ = std::fs::remove_dir_all(&dir);
    }
    println!(
        "lara bench cluster: {} entities x {} rows ({} rows per message), {m} columns, window {}, hidden {}; {} partitions, lease TTL {} ms; nats-server -js (file store) on loopback; {} cores",
        args.entities,
        args.rows_per_entity,
        args.rows_per_message,
        args.window,
        args.hidden,
        args.partitions,
        args.lease_ttl_ms,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
    );
    println!("  in process, one thread, no broker: {inproc:.0} rows/s");
    println!("| workers | rows/s end to end | publish of all rows (s) | until every result stored (s) | worker RSS idle → after (MiB each) | RSS growth KiB / entity | snapshot KiB / entity | broker bytes / row (points + results) |");
    println!("|---|---|---|---|---|---|---|---|");
    for f in &figures {
        println!(
            "| {} | {:.0} | {:.2} | {:.2} | {:.0} → {:.0} | {:.0} | {:.1} | {:.0} + {:.0} |",
            f.workers,
            f.rows_per_s,
            f.publish_s,
            f.total_s,
            f.rss_start_mib,
            f.rss_per_worker_mib,
            (f.rss_per_worker_mib - f.rss_start_mib) * f.workers as f64 * 1024.0 / args.entities as f64,
            f.snapshot_bytes_per_entity / 1024.0,
            f.points_bytes_per_row,
            f.results_bytes_per_row
        );
    }
    if let Some((p50, p99, failover, lease_s, n_lost)) = tail {
        println!("  publish → result latency (single rows, {} samples): p50 {p50:.1} ms, p99 {p99:.1} ms", args.latency_samples);
        println!(
            "  failover after kill -9 of one worker ({n_lost} partitions): leases owned again after {lease_s:.2} s; first result for a row published after the kill {failover:.2} s after the kill"
        );
    }
    Ok(())
}

/// (latency p50 ms, p99 ms, failover s to the first result, failover s to the leases, partitions lost)
fn latency_and_failover(
    rt: &tokio::runtime::Runtime,
    b: &Broker,
    ws: &mut Vec<Worker>,
    args: &ClusterBenchArgs,
) -> Result<(f64, f64, f64, f64, usize)> {
    let m = args.columns;
    // Latency: single rows to entity e0..e9 in turn, one at a time, 20 ms apart.
    let mut lat = rt.block_on(async {
        let mut sub = b.client.subscribe("lara.scores.>").await?;
        let mut lat = Vec::new();
        for i in 0..args.latency_samples {
            let e = i % 10;
            let ent = format!("e{e}");
            let t = Instant::now();
            let (seq, _) = b.publish_points(&ent, &[row(e, args.rows_per_entity + i, m)], None).await?;
            loop {
                let msg = tokio::time::timeout(Duration::from_secs(10), sub.next())
                    .await
                    .context("no result within 10 s")?
                    .context("subscription ended")?;
                let v: serde_json::Value = serde_json::from_slice(&msg.payload)?;
                if v["points_seq"].as_u64() == Some(seq) {
                    break;
                }
            }
            lat.push(t.elapsed().as_secs_f64() * 1e3);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        anyhow::Ok(lat)
    })?;
    let (p50, p99) = (percentile(&mut lat, 0.5), percentile(&mut lat, 0.99));
    if ws.len() < 2 {
        return Ok((p50, p99, f64::NAN, f64::NAN, 0));
    }
    // Failover: kill the last worker; follow one entity of one of its partitions.
    let victim = ws.len() - 1;
    let vid = ws[victim].id.clone();
    let (lost, ent) = rt.block_on(async {
        let v = b.cluster_view().await?;
        let o = v["owners"].as_object().context("owners")?;
        let lost: Vec<u32> = o.iter().filter(|(_, w)| w.as_str() == Some(vid.as_str())).filter_map(|(p, _)| p.parse().ok()).collect();
        let ent = (0..args.entities)
            .map(|e| format!("e{e}"))
            .find(|e| lost.contains(&lara_cluster::partition_of(e, b.partitions)))
            .context("no entity in the victim's partitions")?;
        anyhow::Ok((lost, ent))
    })?;
    let e_idx: usize = ent[1..].parse()?;
    let w = ws.remove(victim);
    let killed = Instant::now();
    drop(w);
    let (failover, lease_s) = rt.block_on(async {
        let mut sub = b.client.subscribe(lara_cluster::scores_subject(&ent)).await?;
        let mut lease_s = f64::NAN;
        let mut i = 0usize;
        let mut sent = std::collections::HashSet::new();
        loop {
            let (seq, _) =
                b.publish_points(&ent, &[row(e_idx, args.rows_per_entity + args.latency_samples + i, m)], None).await?;
            sent.insert(seq);
            i += 1;
            if lease_s.is_nan() {
                let (n, wsn) = owners(b).await?;
                if n == b.partitions as usize && !wsn.contains(&vid) {
                    lease_s = killed.elapsed().as_secs_f64();
                }
            }
            let deadline = tokio::time::sleep(Duration::from_millis(50));
            tokio::pin!(deadline);
            loop {
                tokio::select! {
                    _ = &mut deadline => break,
                    m = sub.next() => {
                        let Some(m) = m else { bail!("subscription ended") };
                        let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
                        if v["points_seq"].as_u64().is_some_and(|s| sent.contains(&s)) {
                            let first = killed.elapsed().as_secs_f64();
                            // Then every partition of the victim owned again.
                            while lease_s.is_nan() {
                                let (n, wsn) = owners(b).await?;
                                if n == b.partitions as usize && !wsn.contains(&vid) {
                                    lease_s = killed.elapsed().as_secs_f64();
                                } else if killed.elapsed() > Duration::from_secs(60) {
                                    bail!("the victim's partitions not owned again within 60 s");
                                }
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            return anyhow::Ok((first, lease_s));
                        }
                    }
                }
            }
            if killed.elapsed() > Duration::from_secs(60) {
                bail!("no result within 60 s of the kill");
            }
        }
    })?;
    Ok((p50, p99, failover, lease_s, lost.len()))
}
