//! `lara worker`: claims partitions through leases, runs their entities' monitors, publishes
//! results and alarms, writes snapshots (the protocol: crate docs).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::{self, kv};
use futures_util::{FutureExt, StreamExt};
use lara_stream::Monitor;
use lara_vae::Detector;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::{
    alarm_record, events_subject, now_ms, scores_subject, Broker, EventsMsg, PointsMsg, ResultsMsg, SnapshotRecord,
    ALARMS_SUBJECT,
};

/// How to run a worker.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    pub nats: String,
    /// None: the cluster's (or 64 when the cluster is new).
    pub partitions: Option<u32>,
    pub id: String,
    /// Only used when the cluster is new (the lease bucket's `max_age`).
    pub lease_ttl: Option<Duration>,
    /// Rows between two snapshots of a partition's changed entities.
    pub snapshot_every: u64,
    /// A partition idle this long after a change writes its snapshots and checkpoint.
    pub snapshot_idle: Duration,
    /// Where to serve `/metrics` (None: nowhere).
    pub metrics_addr: Option<String>,
    /// Most points messages scored between two publishes.
    pub batch: usize,
    /// Purge each partition's points below its checkpoint once the checkpoint is written
    /// (`LARA_POINTS` then holds only what a takeover would replay).
    pub purge_points: bool,
}

impl WorkerConfig {
    pub fn new(nats: &str) -> WorkerConfig {
        WorkerConfig {
            nats: nats.to_string(),
            partitions: None,
            id: format!("w{}-{}", std::process::id(), now_ms() % 100_000),
            lease_ttl: None,
            snapshot_every: 1000,
            snapshot_idle: Duration::from_secs(5),
            metrics_addr: Some("127.0.0.1:0".into()),
            batch: 256,
            purge_points: true,
        }
    }
}

/// Counters served on `/metrics`.
#[derive(Default)]
pub struct WorkerMetrics {
    pub rows: AtomicU64,
    pub messages: AtomicU64,
    pub messages_skipped: AtomicU64,
    pub messages_invalid: AtomicU64,
    pub results_published: AtomicU64,
    pub results_duplicate: AtomicU64,
    pub rows_not_republished: AtomicU64,
    pub alarms: AtomicU64,
    pub snapshots: AtomicU64,
    pub entities_loaded: AtomicU64,
    pub leases_claimed: AtomicU64,
    pub leases_lost: AtomicU64,
    pub leases_released: AtomicU64,
    pub partitions_owned: AtomicU64,
    pub partition_errors: AtomicU64,
    pub controls: AtomicU64,
    pub events_published: AtomicU64,
    pub points_purged: AtomicU64,
}

impl WorkerMetrics {
    pub fn prometheus(&self, id: &str) -> String {
        let l = format!("{{worker=\"{id}\"}}");
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        for (name, kind, v, help) in [
            ("lara_worker_rows_total", "counter", g(&self.rows), "rows scored (replayed rows included)"),
            ("lara_worker_messages_total", "counter", g(&self.messages), "points messages applied"),
            ("lara_worker_messages_skipped_total", "counter", g(&self.messages_skipped), "points messages already in a snapshot"),
            ("lara_worker_messages_invalid_total", "counter", g(&self.messages_invalid), "points messages dropped (unknown entity, bad rows)"),
            ("lara_worker_results_published_total", "counter", g(&self.results_published), "results messages published"),
            ("lara_worker_results_duplicate_total", "counter", g(&self.results_duplicate), "results messages the broker dropped as duplicates"),
            ("lara_worker_rows_not_republished_total", "counter", g(&self.rows_not_republished), "re-scored rows whose results were already stored"),
            ("lara_worker_alarms_total", "counter", g(&self.alarms), "alarms published"),
            ("lara_worker_snapshots_total", "counter", g(&self.snapshots), "entity snapshots written"),
            ("lara_worker_entities_loaded_total", "counter", g(&self.entities_loaded), "entities loaded (restored or new)"),
            ("lara_worker_leases_claimed_total", "counter", g(&self.leases_claimed), "partition leases claimed"),
            ("lara_worker_leases_lost_total", "counter", g(&self.leases_lost), "partition leases lost (renewal failed)"),
            ("lara_worker_leases_released_total", "counter", g(&self.leases_released), "partition leases released (rebalancing, shutdown)"),
            ("lara_worker_partitions_owned", "gauge", g(&self.partitions_owned), "partitions owned now"),
            ("lara_worker_partition_errors_total", "counter", g(&self.partition_errors), "partition tasks that failed (restarted from the checkpoint)"),
            ("lara_worker_controls_total", "counter", g(&self.controls), "operator controls applied (replayed ones included)"),
            ("lara_worker_events_published_total", "counter", g(&self.events_published), "decision messages published (lara.events.<entity>)"),
            ("lara_worker_points_purged_total", "counter", g(&self.points_purged), "points messages purged below checkpoints"),
        ] {
            s.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n{name}{l} {v}\n"));
        }
        s
    }
}

struct Ctx {
    b: Broker,
    cfg: WorkerConfig,
    m: Arc<WorkerMetrics>,
    models: tokio::sync::Mutex<HashMap<String, (Arc<Detector>, String)>>,
}

impl Ctx {
    async fn model(&self, id: &str) -> Result<(Arc<Detector>, String)> {
        let mut models = self.models.lock().await;
        if let Some(m) = models.get(id) {
            return Ok(m.clone());
        }
        let bytes = self.b.get_model(id).await?;
        let det = Detector::from_bytes(std::path::Path::new(id), &bytes)?;
        let fp = lara_stream::model_fingerprint(&det)?;
        let m = (Arc::new(det), fp);
        models.insert(id.to_string(), m.clone());
        Ok(m)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    Run,
    /// Write the snapshots, then end (the lease is released after).
    Release,
    /// The lease is gone: end at once.
    Lost,
}

struct Owned {
    rev: u64,
    stop: watch::Sender<Stop>,
    handle: JoinHandle<Result<()>>,
}

/// Runs a worker until SIGINT/SIGTERM (then releases its partitions). Prints
/// `worker <id> metrics on http://ADDR` (or `worker <id> started`) once connected.
pub fn run(cfg: WorkerConfig) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run_async(cfg))
}

async fn run_async(cfg: WorkerConfig) -> Result<()> {
    let b = Broker::connect(&cfg.nats, cfg.partitions, cfg.lease_ttl).await?;
    let m = Arc::new(WorkerMetrics::default());
    if let Some(addr) = &cfg.metrics_addr {
        let server = tiny_http::Server::http(addr.as_str()).map_err(|e| anyhow!("metrics on {addr}: {e}"))?;
        println!("worker {} metrics on http://{}", cfg.id, server.server_addr());
        let (m, id) = (m.clone(), cfg.id.clone());
        std::thread::spawn(move || {
            while let Ok(req) = server.recv() {
                let (status, body) = match req.url() {
                    "/metrics" => (200, m.prometheus(&id)),
                    "/healthz" => (200, "ok\n".to_string()),
                    _ => (404, "not found\n".to_string()),
                };
                let _ = req.respond(tiny_http::Response::from_string(body).with_status_code(status));
            }
        });
    } else {
        println!("worker {} started", cfg.id);
    }
    use std::io::Write;
    let _ = std::io::stdout().flush();
    tracing::info!(id = %cfg.id, partitions = b.partitions, ttl_ms = b.lease_ttl.as_millis() as u64, "worker connected");
    let ctx = Arc::new(Ctx { b, cfg, m, models: tokio::sync::Mutex::new(HashMap::new()) });
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let shutdown = async move {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {},
            _ = term.recv() => {},
        }
    };
    lease_loop(ctx, shutdown).await
}

/// The lease manager: heartbeat, renew, rebalance, claim.
async fn lease_loop(ctx: Arc<Ctx>, shutdown: impl std::future::Future<Output = ()>) -> Result<()> {
    let b = &ctx.b;
    let p_count = b.partitions;
    let tick = (b.lease_ttl / 4).max(Duration::from_millis(100));
    let id = ctx.cfg.id.clone();
    let mut owned: HashMap<u32, Owned> = HashMap::new();
    // Where this worker starts looking for free partitions (spreads the first claims).
    let offset = crate::partition_of(&id, p_count);
    tokio::pin!(shutdown);
    loop {
        let t0 = Instant::now();
        // Heartbeat and the share.
        if let Err(e) = b.workers.put(&id, now_ms().to_string().into()).await {
            tracing::warn!("heartbeat: {e}");
        }
        let live = match b.live_workers().await {
            Ok(w) => (w.len() as u32).max(1),
            Err(_) => 1,
        };
        let target = p_count.div_ceil(live) as usize;
        // Partition tasks that ended by themselves (an error): free the lease for a retry.
        let done: Vec<u32> = owned.iter().filter(|(_, o)| o.handle.is_finished()).map(|(p, _)| *p).collect();
        for p in done {
            let o = owned.remove(&p).expect("owned");
            match o.handle.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    ctx.m.partition_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(partition = p, "partition task failed: {e:#}");
                }
                Err(e) => {
                    ctx.m.partition_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(partition = p, "partition task panicked: {e}");
                }
            }
            let _ = b.leases.delete_expect_revision(format!("p{p}"), Some(o.rev)).await;
        }
        // Renew.
        let keys: Vec<u32> = owned.keys().copied().collect();
        for p in keys {
            let rev = owned[&p].rev;
            match b.leases.update(format!("p{p}"), id.clone().into(), rev).await {
                Ok(r) => owned.get_mut(&p).expect("owned").rev = r,
                Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => {
                    tracing::warn!(partition = p, "lease lost");
                    ctx.m.leases_lost.fetch_add(1, Ordering::Relaxed);
                    let o = owned.remove(&p).expect("owned");
                    let _ = o.stop.send(Stop::Lost);
                }
                Err(e) => tracing::warn!(partition = p, "lease renewal: {e}"),
            }
        }
        // Give back what exceeds the share (highest partitions first).
        while owned.len() > target {
            let p = *owned.keys().max().expect("non-empty");
            let o = owned.remove(&p).expect("owned");
            release(&ctx, p, o).await;
        }
        // Claim free partitions up to the share.
        if owned.len() < target {
            for k in 0..p_count {
                if owned.len() >= target || t0.elapsed() > tick {
                    break;
                }
                let p = (offset + k) % p_count;
                if owned.contains_key(&p) {
                    continue;
                }
                if let Ok(rev) = b.leases.create(format!("p{p}"), id.clone().into()).await {
                    ctx.m.leases_claimed.fetch_add(1, Ordering::Relaxed);
                    tracing::info!(partition = p, "lease claimed");
                    let (tx, rx) = watch::channel(Stop::Run);
                    let handle = tokio::spawn(run_partition(ctx.clone(), p, rx));
                    owned.insert(p, Owned { rev, stop: tx, handle });
                }
            }
        }
        ctx.m.partitions_owned.store(owned.len() as u64, Ordering::Relaxed);
        let wait = tick.saturating_sub(t0.elapsed());
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = &mut shutdown => {
                tracing::info!("shutting down: releasing {} partitions", owned.len());
                let all: Vec<u32> = owned.keys().copied().collect();
                for p in all {
                    let o = owned.remove(&p).expect("owned");
                    release(&ctx, p, o).await;
                }
                let _ = b.workers.delete(&id).await;
                return Ok(());
            }
        }
    }
}

/// Stops a partition's task after its snapshots, then deletes the lease.
async fn release(ctx: &Ctx, p: u32, o: Owned) {
    let _ = o.stop.send(Stop::Release);
    match tokio::time::timeout(ctx.b.lease_ttl / 2, o.handle).await {
        Ok(Ok(Ok(()))) => {}
        Ok(Ok(Err(e))) => tracing::warn!(partition = p, "partition task failed on release: {e:#}"),
        Ok(Err(e)) => tracing::warn!(partition = p, "partition task panicked: {e}"),
        Err(_) => tracing::warn!(partition = p, "partition task slow to release; the lease is freed anyway"),
    }
    ctx.m.leases_released.fetch_add(1, Ordering::Relaxed);
    tracing::info!(partition = p, "lease released");
    let _ = ctx.b.leases.delete_expect_revision(format!("p{p}"), Some(o.rev)).await;
}

/// One entity's live state in a partition task.
struct Ent {
    monitor: Monitor,
    /// Points sequence the stored snapshot covers.
    snap_seq: u64,
    /// Revision of the snapshot key (0: none).
    snap_rev: u64,
    in_episode: bool,
    /// Rows up to this one are already on the results stream (not published again).
    published_upto: Option<u64>,
    /// Points sequence of the last decisions message already on the results stream.
    events_upto: Option<u64>,
    /// Last points sequence applied.
    seq: u64,
    dirty: bool,
    /// Revision of the entity's spec in `lara-entities` when it was loaded.
    spec_rev: u64,
    /// A `delete` control was applied: later messages are dropped unless the entity was
    /// created again (a spec with another revision).
    deleted: bool,
}

async fn load_entity(ctx: &Ctx, id: &str) -> Result<Option<Ent>> {
    let b = &ctx.b;
    let (spec, spec_rev) = match b.entities.entry(id).await? {
        Some(e) if e.operation == kv::Operation::Put => {
            (serde_json::from_slice::<crate::EntitySpec>(&e.value).with_context(|| format!("entity {id}: spec"))?, e.revision)
        }
        _ => return Ok(None),
    };
    let (base, fp) = ctx.model(&spec.model).await?;
    let entry = b.snapshots.entry(id).await?;
    let (monitor, snap_seq, in_episode, snap_rev) = match entry {
        Some(e) if e.operation == kv::Operation::Put => {
            let r = SnapshotRecord::from_bytes(&e.value).with_context(|| format!("entity {id}"))?;
            let mon = Monitor::restore_shared(&r.monitor, Some((base, fp))).with_context(|| format!("entity {id}"))?;
            (mon, r.seq, r.in_episode, e.revision)
        }
        other => {
            let mon = Monitor::new_shared(base, fp, spec.monitor_config()?)?;
            (mon, 0, false, other.map(|e| e.revision).unwrap_or(0))
        }
    };
    let published_upto = match b.last_on(&b.results, &scores_subject(id)).await? {
        Some(m) => {
            let v: serde_json::Value = serde_json::from_slice(&m.payload)?;
            v["rows"].as_array().and_then(|a| a.last()).and_then(|r| r["row"].as_u64())
        }
        None => None,
    };
    let events_upto = match b.last_on(&b.results, &events_subject(id)).await? {
        Some(m) => serde_json::from_slice::<serde_json::Value>(&m.payload)?["points_seq"].as_u64(),
        None => None,
    };
    ctx.m.entities_loaded.fetch_add(1, Ordering::Relaxed);
    Ok(Some(Ent {
        monitor,
        snap_seq,
        snap_rev,
        in_episode,
        published_upto,
        events_upto,
        seq: snap_seq,
        dirty: false,
        spec_rev,
        deleted: false,
    }))
}

/// Writes `value` under `key` unless the stored value already covers `seq` (never moves a key
/// to a lower sequence): a revision-checked update, retried on a concurrent write.
async fn write_monotone(kv: &kv::Store, key: &str, value: bytes::Bytes, seq: u64, mut rev: u64) -> Result<u64> {
    for _ in 0..5 {
        let r = if rev == 0 { kv.create(key, value.clone()).await.map_err(|e| e.to_string()) } else {
            kv.update(key, value.clone(), rev).await.map_err(|e| e.to_string())
        };
        match r {
            Ok(r) => return Ok(r),
            Err(e) => {
                let cur = kv.entry(key).await?;
                match cur {
                    Some(c) if c.operation == kv::Operation::Put => {
                        if c.value.len() >= 8 && u64::from_le_bytes(c.value[..8].try_into().expect("8")) >= seq {
                            return Ok(c.revision);
                        }
                        rev = c.revision;
                    }
                    Some(c) => rev = c.revision,
                    None if rev == 0 => bail!("writing {key}: {e}"),
                    None => rev = 0,
                }
            }
        }
    }
    bail!("writing {key}: too many concurrent writers")
}

fn cp_key(p: u32) -> String {
    format!("cp.{p}")
}

/// Snapshots of the changed entities, then the checkpoint (after every result before it was
/// acknowledged: the caller awaited the acks).
async fn snapshot_partition(
    ctx: &Ctx,
    p: u32,
    ents: &mut HashMap<String, Ent>,
    applied: u64,
    cp_rev: &mut u64,
    purged: &mut u64,
) -> Result<()> {
    for (id, e) in ents.iter_mut() {
        if !e.dirty || e.deleted {
            continue;
        }
        let rec = SnapshotRecord { seq: e.seq, in_episode: e.in_episode, monitor: e.monitor.snapshot()? };
        e.snap_rev = write_monotone(&ctx.b.snapshots, id, rec.to_bytes().into(), e.seq, e.snap_rev).await?;
        e.snap_seq = e.seq;
        e.dirty = false;
        ctx.m.snapshots.fetch_add(1, Ordering::Relaxed);
    }
    let v = bytes::Bytes::from(applied.to_le_bytes().to_vec());
    *cp_rev = write_monotone(&ctx.b.snapshots, &cp_key(p), v, applied, *cp_rev).await?;
    // Retention: the points at or below the checkpoint are in snapshots or results; a new
    // owner starts after the checkpoint, so they are never read again.
    if ctx.cfg.purge_points && applied > *purged {
        match ctx.b.points.purge().filter(format!("lara.points.{p}.>")).sequence(applied + 1).await {
            Ok(r) => {
                ctx.m.points_purged.fetch_add(r.purged, Ordering::Relaxed);
                *purged = applied;
            }
            Err(e) => tracing::warn!(partition = p, "purging points up to {applied}: {e}"),
        }
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Results,
    Alarm,
    Events,
}

/// One outgoing message.
struct Out {
    subject: String,
    id: String,
    payload: Vec<u8>,
    kind: Kind,
}

/// The decisions message of points message `seq`, unless one is stored already.
fn events_out(e: &Ent, entity: &str, seq: u64, control: Option<String>, error: Option<String>, events: Vec<lara_stream::Event>) -> Result<Option<Out>> {
    if e.events_upto.is_some_and(|u| seq <= u) {
        return Ok(None);
    }
    let msg = EventsMsg {
        entity: entity.to_string(),
        points_seq: seq,
        control,
        error,
        events,
        state: e.monitor.state().as_str().to_string(),
        model_version: e.monitor.version(),
        rows: e.monitor.rows_seen(),
    };
    Ok(Some(Out {
        subject: events_subject(entity),
        id: format!("events:{entity}:{seq}"),
        payload: serde_json::to_vec(&msg)?,
        kind: Kind::Events,
    }))
}

async fn run_partition(ctx: Arc<Ctx>, p: u32, mut stop: watch::Receiver<Stop>) -> Result<()> {
    let b = &ctx.b;
    let (cp, mut cp_rev) = match b.snapshots.entry(cp_key(p)).await? {
        Some(e) if e.operation == kv::Operation::Put && e.value.len() >= 8 => {
            (u64::from_le_bytes(e.value[..8].try_into().expect("8")), e.revision)
        }
        Some(e) => (0, e.revision),
        None => (0, 0),
    };
    let deliver_policy = if cp == 0 {
        jetstream::consumer::DeliverPolicy::All
    } else {
        jetstream::consumer::DeliverPolicy::ByStartSequence { start_sequence: cp + 1 }
    };
    let consumer = b
        .points
        .create_consumer(jetstream::consumer::pull::OrderedConfig {
            filter_subject: format!("lara.points.{p}.>"),
            deliver_policy,
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow!("partition {p}: consumer: {e}"))?;
    let mut msgs = consumer.messages().await.map_err(|e| anyhow!("partition {p}: messages: {e}"))?;
    tracing::info!(partition = p, from = cp + 1, "partition started");
    let mut ents: HashMap<String, Ent> = HashMap::new();
    let mut applied = cp;
    let mut purged = 0u64;
    let mut since_snap = 0u64;
    let mut dirty_since: Option<Instant> = None;
    let idle_snapshot = ctx.cfg.snapshot_idle;
    loop {
        let first = tokio::select! {
            _ = stop.changed() => break,
            m = tokio::time::timeout(Duration::from_millis(500), msgs.next()) => m,
        };
        let mut batch = match first {
            Err(_) => {
                // Idle: snapshot what changed a while ago.
                if dirty_since.is_some_and(|t| t.elapsed() > idle_snapshot) && since_snap > 0 {
                    snapshot_partition(&ctx, p, &mut ents, applied, &mut cp_rev, &mut purged).await?;
                    since_snap = 0;
                    dirty_since = None;
                }
                continue;
            }
            Ok(None) => bail!("partition {p}: the consumer ended"),
            Ok(Some(m)) => vec![m.map_err(|e| anyhow!("partition {p}: {e}"))?],
        };
        while batch.len() < ctx.cfg.batch {
            match msgs.next().now_or_never() {
                Some(Some(Ok(m))) => batch.push(m),
                Some(Some(Err(e))) => bail!("partition {p}: {e}"),
                Some(None) => bail!("partition {p}: the consumer ended"),
                None => break,
            }
        }
        // Parse; load the entities seen for the first time.
        let mut work: Vec<(u64, String, Option<PointsMsg>)> = Vec::with_capacity(batch.len());
        for m in &batch {
            let seq = m.info().map_err(|e| anyhow!("partition {p}: {e}"))?.stream_sequence;
            let entity = m.subject.as_str().rsplit('.').next().unwrap_or("").to_string();
            // A deleted entity: dropped, unless it was created again meanwhile.
            if let Some(e) = ents.get(&entity).filter(|e| e.deleted) {
                let recreated = match b.entities.entry(entity.as_str()).await? {
                    Some(x) => x.operation == kv::Operation::Put && x.revision != e.spec_rev,
                    None => false,
                };
                if recreated {
                    ents.remove(&entity);
                }
            }
            if !ents.contains_key(&entity) {
                match load_entity(&ctx, &entity).await? {
                    Some(e) => {
                        ents.insert(entity.clone(), e);
                    }
                    None => {
                        tracing::warn!(partition = p, entity, seq, "points for an unknown entity: dropped");
                        ctx.m.messages_invalid.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                }
            }
            work.push((seq, entity, serde_json::from_slice::<PointsMsg>(&m.payload).ok()));
        }
        // Score (synchronous, CPU-bound).
        let (outs, n_rows) = tokio::task::block_in_place(|| -> Result<(Vec<Out>, u64)> {
            let mut outs = Vec::new();
            let mut n_rows = 0u64;
            for (seq, entity, points) in work {
                let e = ents.get_mut(&entity).expect("loaded");
                if e.deleted {
                    // A retried delete is answered again; anything else is dropped.
                    if points.as_ref().and_then(|pm| pm.control.as_deref()) == Some("delete") {
                        if let Some(o) = events_out(e, &entity, seq, Some("delete".into()), None, Vec::new())? {
                            outs.push(o);
                        }
                    } else {
                        ctx.m.messages_invalid.fetch_add(1, Ordering::Relaxed);
                    }
                    continue;
                }
                if seq <= e.snap_seq {
                    ctx.m.messages_skipped.fetch_add(1, Ordering::Relaxed);
                    continue;
                }
                e.seq = seq;
                // An operator control: applied here, at its place in the entity's stream (so
                // every replay applies it at the same row), answered on lara.events.<entity>.
                if let Some(c) = points.as_ref().and_then(|pm| pm.control.clone()) {
                    let mut mon = e.monitor.clone();
                    let r = match c.as_str() {
                        "adapt" => mon.adapt_now().map_err(|x| x.to_string()),
                        "rollback" => mon.rollback().map_err(|x| x.to_string()),
                        "delete" => Ok(()),
                        other => Err(format!("unknown control {other:?}")),
                    };
                    let events = if r.is_ok() {
                        let ev = mon.drain_events();
                        e.monitor = mon;
                        ev
                    } else {
                        Vec::new()
                    };
                    e.dirty = true;
                    // Counts toward the next snapshot like a row.
                    n_rows += 1;
                    ctx.m.controls.fetch_add(1, Ordering::Relaxed);
                    if let Some(o) = events_out(e, &entity, seq, Some(c.clone()), r.err(), events)? {
                        outs.push(o);
                    }
                    if c == "delete" {
                        e.deleted = true;
                    }
                    continue;
                }
                let m = e.monitor.columns().len();
                let (rows, timestamps) = match points {
                    Some(pm)
                        if !pm.rows.is_empty()
                            && pm.rows.iter().all(|r| r.len() == m && r.iter().all(|v| v.is_finite()))
                            && pm.timestamps.as_ref().is_none_or(|t| t.len() == pm.rows.len()) =>
                    {
                        (pm.rows, pm.timestamps)
                    }
                    _ => {
                        tracing::warn!(partition = p, entity, seq, "malformed points message: dropped");
                        ctx.m.messages_invalid.fetch_add(1, Ordering::Relaxed);
                        continue;
                    }
                };
                let scored = e.monitor.push(&rows).with_context(|| format!("entity {entity} at sequence {seq}"))?;
                let events = e.monitor.drain_events();
                e.dirty = true;
                ctx.m.messages.fetch_add(1, Ordering::Relaxed);
                ctx.m.rows.fetch_add(scored.len() as u64, Ordering::Relaxed);
                n_rows += scored.len() as u64;
                let mut alarms = Vec::new();
                for s in &scored {
                    if s.is_anomaly && !e.in_episode {
                        alarms.push((s.row, alarm_record(&entity, s)));
                    }
                    e.in_episode = s.is_anomaly;
                }
                if !events.is_empty() {
                    if let Some(o) = events_out(e, &entity, seq, None, None, events)? {
                        outs.push(o);
                    }
                }
                let (first, last) = (scored[0].row, scored[scored.len() - 1].row);
                if e.published_upto.is_some_and(|u| last <= u) {
                    ctx.m.rows_not_republished.fetch_add(scored.len() as u64, Ordering::Relaxed);
                    continue;
                }
                for (row, a) in alarms {
                    if e.published_upto.is_some_and(|u| row <= u) {
                        continue;
                    }
                    outs.push(Out {
                        subject: ALARMS_SUBJECT.to_string(),
                        id: format!("alarm:{entity}:{seq}:{row}"),
                        payload: serde_json::to_vec(&a)?,
                        kind: Kind::Alarm,
                    });
                }
                let n = scored.len();
                let msg =
                    ResultsMsg { entity: entity.clone(), points_seq: seq, rows: scored, timestamps, published_ms: now_ms() };
                outs.push(Out {
                    subject: scores_subject(&entity),
                    id: format!("{entity}:{seq}:{first}:{n}"),
                    payload: serde_json::to_vec(&msg)?,
                    kind: Kind::Results,
                });
            }
            Ok((outs, n_rows))
        })?;
        // Publish, then wait for every ack (before any checkpoint may cover these messages).
        let mut acks = Vec::with_capacity(outs.len());
        for o in outs {
            let msg = jetstream::message::PublishMessage::build().payload(o.payload.into()).message_id(&o.id);
            let ack = b.js.send_publish(o.subject, msg).await.map_err(|e| anyhow!("partition {p}: publish: {e}"))?;
            acks.push((ack, o.kind));
        }
        for (ack, kind) in acks {
            let a = ack.await.map_err(|e| anyhow!("partition {p}: publish ack: {e}"))?;
            let c = match (a.duplicate, kind) {
                (true, _) => &ctx.m.results_duplicate,
                (false, Kind::Alarm) => &ctx.m.alarms,
                (false, Kind::Events) => &ctx.m.events_published,
                (false, Kind::Results) => &ctx.m.results_published,
            };
            c.fetch_add(1, Ordering::Relaxed);
        }
        applied = applied.max(batch.last().and_then(|m| m.info().ok()).map(|i| i.stream_sequence).unwrap_or(applied));
        since_snap += n_rows;
        dirty_since.get_or_insert_with(Instant::now);
        if since_snap >= ctx.cfg.snapshot_every {
            snapshot_partition(&ctx, p, &mut ents, applied, &mut cp_rev, &mut purged).await?;
            since_snap = 0;
            dirty_since = None;
        }
    }
    if *stop.borrow() == Stop::Release && since_snap > 0 {
        snapshot_partition(&ctx, p, &mut ents, applied, &mut cp_rev, &mut purged).await?;
    }
    tracing::info!(partition = p, applied, "partition stopped");
    Ok(())
}
