//! # lara-cluster — scale-out on NATS JetStream
//!
//! A fleet too large for one `lara serve` is spread over `lara worker` processes that share
//! nothing but a NATS server with JetStream (Debian's `nats-server` 2.9 is enough; the client
//! is `async-nats`). `lara serve --nats URL` (or its alias `lara front`) is the HTTP API in
//! front of them ([`front`]): it publishes ingest and operator controls and serves results,
//! with the single node's routes and bodies. The online monitor stays synchronous and
//! deterministic (`lara-stream`); async code lives only at the broker edges.
//!
//! ## Streams and buckets
//! | name | kind | content |
//! |---|---|---|
//! | `LARA_POINTS` | stream, file storage | `lara.points.<partition>.<entity>`: one message per ingest request, `{"rows": [[..], ..]}` (remote-write adds `"timestamps"`), or one operator control `{"control": "adapt" \| "rollback" \| "delete"}` ([`PointsMsg`]); `Nats-Msg-Id` = the client's `Idempotency-Key` (remote-write: `rw:<entity>:<first ts>:<rows>`; none without a key), so a retried request is stored once (duplicate window [`DUPLICATE_WINDOW`]). Purged per partition below its checkpoint |
//! | `LARA_RESULTS` | stream, file storage | `lara.scores.<entity>`: the monitor's results for one points message ([`ResultsMsg`], `Nats-Msg-Id` = `<entity>:<points seq>:<first row>:<rows>`: the same for every owner, unique per entity incarnation); `lara.events.<entity>`: the decisions one points message caused, and every control's answer ([`EventsMsg`], `Nats-Msg-Id` = `events:<entity>:<points seq>`); `lara.alarms`: the first anomalous row of an episode ([`alarm_record`], the single node's record; `Nats-Msg-Id` = `alarm:<entity>:<points seq>:<row>`). Optional `max_age` / `max_bytes` ([`Broker::set_results_retention`]) |
//! | `lara-leases` | KV, `max_age` = lease TTL | `p<partition>` → worker id: who owns the partition |
//! | `lara-workers` | KV, `max_age` = lease TTL | worker id → heartbeat: the live workers (rebalancing) |
//! | `lara-snapshots` | KV | `<entity>` → [`SnapshotRecord`] (the points-stream sequence it covers + the monitor's snapshot); `cp.<partition>` → the partition's checkpoint sequence |
//! | `lara-entities` | KV | `<entity>` → [`EntitySpec`] (model id, policy, slots, cold start); `model.<id>` → the model's columns |
//! | `lara-config` | KV | `partitions` → the partition count every process must agree on |
//! | `lara-models` | object store | model id → the `.lara` file (chunked: models may exceed a message) |
//!
//! An entity's partition is `FNV-1a(entity id) mod partitions` ([`partition_of`]).
//!
//! ## Leases, rebalancing, failover
//! A worker heartbeats into `lara-workers` every TTL/4 and counts the live workers `n`; it holds
//! at most `ceil(P / n)` partitions. It claims a free partition with a KV `create` on
//! `p<partition>` (atomic: only one creator wins), renews each lease every TTL/4 with
//! `update(expected revision)` and, when it holds more than its share (a worker joined),
//! releases the highest ones: the partition's task stops, writes its snapshots, then the lease
//! is deleted (revision-checked). A failed renewal means the lease was lost (it expired while
//! the worker stalled): the partition's task stops at once. A worker that dies (`kill -9`)
//! stops renewing; the bucket's `max_age` removes its lease after at most one TTL and another
//! worker claims the partition at its next tick: failover within TTL + TTL/4.
//!
//! ## A partition's task
//! Reads the checkpoint `cp.<p>` = S and follows `lara.points.<p>.>` from sequence S+1 with an
//! ordered consumer. On an entity's first message it loads its [`EntitySpec`], its model (cached
//! per worker, shared by all its entities), its [`SnapshotRecord`] (or a fresh monitor), and the
//! last row already published on `lara.scores.<entity>`. A message whose sequence is at most the
//! entity's snapshot sequence is skipped (the snapshot already contains it); the others are
//! pushed through the entity's monitor in stream order, and results (and alarms) are published
//! — except rows at or below the last row already published, which a previous owner had
//! published. Every `snapshot_every` rows (and on release), after **all publish acks of the
//! results so far have arrived**, the task writes the snapshots of the entities it changed, then
//! the checkpoint `cp.<p>` = the last sequence applied. Snapshot and checkpoint writes are
//! revision-checked updates that never move a key to a lower sequence.
//!
//! ## Operator controls
//! `POST /v1/entities/{id}/adapt`, `/rollback` and `DELETE /v1/entities/{id}` publish a
//! control message on the entity's points subject. The owning worker applies it in stream
//! order, between the rows before and after it, on a copy of the monitor (a refused control
//! changes nothing, as on the single node), and answers on `lara.events.<entity>`; the front
//! waits for that answer (10 s, then 202 "queued"). A control is a stream message like a row:
//! it is covered by snapshots and checkpoints the same way, so a worker that takes over
//! replays it exactly where it was, and its answer is published once (the last
//! `lara.events.<entity>` sequence is read when the entity is loaded, like the last scored
//! row). `delete` makes the owner drop the entity's monitor (a tombstone until the entity is
//! created again, recognised by a new spec revision); once it answered, the front deletes the
//! spec and the snapshot and purges the entity's points, results and decisions.
//!
//! ## Retention
//! After a partition's checkpoint S is written, the worker purges `lara.points.<p>.>` below
//! S+1 (everything at or below S is in snapshots or in stored results, and a new owner starts
//! at S+1); `lara worker --keep-points` keeps them. `LARA_RESULTS` takes a `max_age` and a
//! `max_bytes` from the front (`--results-max-age-s`, `--results-max-mib`; the duplicate
//! window shrinks to `max_age` when shorter). Keep `max_age` far above the lease TTL: a new
//! owner re-publishes re-scored rows whose stored results already expired.
//!
//! ## Exactly once, and equal to a single node
//! * The rows an entity sees are the payloads of its points messages in stream order: the same
//!   sequence for every worker that ever runs it, and the same sequence `lara replay` would get.
//!   The monitor is deterministic and batch-invariant, and restoring a snapshot continues
//!   bit-identically, so any worker computes the same result for each row.
//! * Nothing is lost: a checkpoint S is written only after every result of every message ≤ S was
//!   acknowledged by the broker and every changed entity's snapshot covers S; a new owner starts
//!   at S+1, so every message after the last checkpoint is scored again, and every message
//!   before it is either contained in the entity's snapshot or its results are stored.
//! * Nothing twice: rows re-scored after a takeover are not re-published when the results
//!   stream already holds them (the last row on `lara.scores.<entity>` is read when the entity is
//!   loaded), and a result re-published by two owners at once (a stale lease) carries the same
//!   `Nats-Msg-Id` and the same bytes, so the broker drops the second copy within its duplicate
//!   window.
//! * Leases are for efficiency, not for safety: two workers briefly running one partition
//!   publish identical results and write snapshots that are correct whichever wins.
//!
//! ## What is not done
//! * Of `lara serve`'s API the front lacks: model training jobs (`POST /v1/models`,
//!   `…/train`, `/v1/jobs`), model listing and deletion, `GET /v1/models/{id}/file`,
//!   `GET /v1/entities` (listing), `GET …/versions`, stateless `/v1/detect`, webhooks and their
//!   dead letters, alarm explanations, the dashboard and `/v1/openapi.json`. Timestamps are
//!   carried to the results but not checked to increase (the single node refuses older ones).
//! * Remote-write rows wait for their missing columns in the memory of the front that got
//!   them: behind a load balancer, route one Prometheus to one front. The last timestamp per
//!   entity (late samples are dropped) is recovered from the entity's last points message
//!   only while that message is not purged; a retried request is de-duplicated by its message
//!   id within the duplicate window.
//! * Rows posted while a `DELETE` of their entity is in flight may still be scored before the
//!   entity's streams are purged. Alarms of a deleted entity stay on `lara.alarms`.
//! * No replicas are configured (single broker); on a NATS cluster set R3. The partition count
//!   is fixed when the cluster is first set up; entities cannot move to another model.

pub mod front;
pub mod natsd;
pub mod worker;

// For the CLI's benchmark (async code without its own dependencies on these).
pub use async_nats;
pub use futures_util;
pub use lara_server;
pub use tokio;

use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use async_nats::jetstream::{self, kv, object_store, stream};
use lara_stream::{Event, MonitorConfig, Policy, Scored};
use serde::{Deserialize, Serialize};

pub const POINTS_STREAM: &str = "LARA_POINTS";
pub const RESULTS_STREAM: &str = "LARA_RESULTS";
pub const LEASES: &str = "lara-leases";
pub const WORKERS: &str = "lara-workers";
pub const SNAPSHOTS: &str = "lara-snapshots";
pub const ENTITIES: &str = "lara-entities";
pub const CONFIG: &str = "lara-config";
pub const MODELS: &str = "lara-models";
pub const ALARMS_SUBJECT: &str = "lara.alarms";
/// Duplicate window of both streams.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
pub const DEFAULT_PARTITIONS: u32 = 64;
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(5);

/// The partition of an entity: FNV-1a 64 of its id modulo the partition count.
pub fn partition_of(entity: &str, partitions: u32) -> u32 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in entity.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    (h % partitions.max(1) as u64) as u32
}

/// Entity and model ids: 1–128 of `[A-Za-z0-9_-]` (they are subject tokens and KV keys).
pub fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

pub fn points_subject(partition: u32, entity: &str) -> String {
    format!("lara.points.{partition}.{entity}")
}
pub fn scores_subject(entity: &str) -> String {
    format!("lara.scores.{entity}")
}
pub fn events_subject(entity: &str) -> String {
    format!("lara.events.{entity}")
}
/// Subjects of `LARA_RESULTS`.
pub const RESULTS_SUBJECTS: [&str; 3] = ["lara.scores.>", "lara.events.>", ALARMS_SUBJECT];

/// How an entity's monitor is built (KV `lara-entities`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntitySpec {
    pub model: String,
    /// LARA cold start from the first `slots` rows on a shared base model.
    #[serde(default)]
    pub cold_start: bool,
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default = "default_slots")]
    pub slots: usize,
}
fn default_policy() -> String {
    "adapt".into()
}
fn default_slots() -> usize {
    40
}

impl EntitySpec {
    /// The monitor configuration (what `lara serve` builds from the same fields).
    pub fn monitor_config(&self) -> Result<MonitorConfig> {
        let policy: Policy = self.policy.parse().map_err(|e: String| anyhow!(e))?;
        let cfg = MonitorConfig { policy, slots: self.slots, cold_start: self.cold_start, ..MonitorConfig::default() };
        cfg.validate().map_err(|e| anyhow!(e))?;
        Ok(cfg)
    }
}

/// The operator controls a points message can carry (`{"control": "adapt"}`): applied by the
/// owning worker at their place in the entity's stream, like rows.
pub const CONTROLS: &[&str] = &["adapt", "rollback", "delete"];

/// A points message's payload: rows (`{"rows": [[..], ..]}`, with `"timestamps"` when the
/// request had them; remote-write: milliseconds), or one operator control
/// (`{"control": "adapt"}`, one of [`CONTROLS`]; no rows).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct PointsMsg {
    #[serde(default)]
    pub rows: Vec<Vec<f32>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub control: Option<String>,
}

impl PointsMsg {
    pub fn rows(rows: Vec<Vec<f32>>) -> PointsMsg {
        PointsMsg { rows, ..Default::default() }
    }
}

/// The results of one points message (subject `lara.scores.<entity>`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ResultsMsg {
    pub entity: String,
    /// Sequence of the points message in `LARA_POINTS`.
    pub points_seq: u64,
    pub rows: Vec<Scored>,
    /// The rows' timestamps from the points message (served as each result's `timestamp`, as
    /// the single node does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamps: Option<Vec<String>>,
    /// Milliseconds since the Unix epoch when the worker published (latency measurement; not
    /// part of the deterministic result).
    #[serde(default)]
    pub published_ms: u64,
}

/// The monitor's decisions caused by one points message (subject `lara.events.<entity>`,
/// `Nats-Msg-Id` = `events:<entity>:<points_seq>`): published for every control message (with
/// its outcome) and for every rows message that produced decisions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventsMsg {
    pub entity: String,
    pub points_seq: u64,
    /// The control this message answers (None: decisions the rows caused).
    #[serde(default)]
    pub control: Option<String>,
    /// Why the monitor refused the control (it changed nothing).
    #[serde(default)]
    pub error: Option<String>,
    pub events: Vec<Event>,
    /// The monitor after the message: its state, model version and rows seen.
    pub state: String,
    pub model_version: u32,
    pub rows: u64,
}

/// The alarm record on `lara.alarms` (`Nats-Msg-Id` = `alarm:<entity>:<points seq>:<row>`): the single
/// node's ([`lara_server::alarms::alarm_json`]): `{"id": "<entity>:<row>", "entity", ..the
/// row's result}`.
pub fn alarm_record(entity: &str, scored: &Scored) -> serde_json::Value {
    lara_server::alarms::alarm_json(entity, &serde_json::to_value(scored).unwrap_or_default())
}

/// An entity's snapshot in KV `lara-snapshots`: the last points-stream sequence it contains,
/// whether its latest row was anomalous (alarm episodes), and the monitor's snapshot bytes.
#[derive(Debug, Clone)]
pub struct SnapshotRecord {
    pub seq: u64,
    pub in_episode: bool,
    pub monitor: Vec<u8>,
}

impl SnapshotRecord {
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(9 + self.monitor.len());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.push(self.in_episode as u8);
        out.extend_from_slice(&self.monitor);
        out
    }
    pub fn from_bytes(b: &[u8]) -> Result<SnapshotRecord> {
        if b.len() < 9 {
            bail!("snapshot record: {} bytes, too short", b.len());
        }
        Ok(SnapshotRecord {
            seq: u64::from_le_bytes(b[..8].try_into().expect("8 bytes")),
            in_episode: b[8] != 0,
            monitor: b[9..].to_vec(),
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// Handles on every stream and bucket of a lara cluster.
#[derive(Clone)]
pub struct Broker {
    pub client: async_nats::Client,
    pub js: jetstream::Context,
    pub points: stream::Stream,
    pub results: stream::Stream,
    pub leases: kv::Store,
    pub workers: kv::Store,
    pub snapshots: kv::Store,
    pub entities: kv::Store,
    pub config: kv::Store,
    pub models: object_store::ObjectStore,
    pub partitions: u32,
    /// The lease TTL (the `max_age` of `lara-leases`, fixed when the cluster was set up).
    pub lease_ttl: Duration,
}

async fn kv_bucket(js: &jetstream::Context, name: &str, max_age: Duration) -> Result<kv::Store> {
    if let Ok(s) = js.get_key_value(name).await {
        return Ok(s);
    }
    // The bucket's stream as async-nats' `create_key_value` configures it, created directly:
    // that call first reads the account info, whose reply from nats-server 2.9 lacks fields the
    // client requires.
    let cfg = stream::Config {
        name: format!("KV_{name}"),
        subjects: vec![format!("$KV.{name}.>")],
        max_messages_per_subject: 1,
        max_age,
        storage: stream::StorageType::File,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        num_replicas: 1,
        ..Default::default()
    };
    if let Err(e) = js.create_stream(cfg).await {
        // Another process created it meanwhile?
        return js.get_key_value(name).await.map_err(|_| anyhow!("bucket {name}: {e}"));
    }
    js.get_key_value(name).await.map_err(|e| anyhow!("bucket {name}: {e}"))
}

async fn get_or_create_stream(js: &jetstream::Context, name: &str, subjects: Vec<String>) -> Result<stream::Stream> {
    let cfg = stream::Config {
        name: name.to_string(),
        subjects,
        storage: stream::StorageType::File,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    match js.get_or_create_stream(cfg).await {
        Ok(s) => Ok(s),
        Err(e) => js.get_stream(name).await.map_err(|_| anyhow!("stream {name}: {e}")),
    }
}

impl Broker {
    /// Connects and creates what is missing. `partitions` and `lease_ttl` only matter for the
    /// first process that sets the cluster up; later ones adopt the stored values (a different
    /// explicit `partitions` is an error).
    pub async fn connect(url: &str, partitions: Option<u32>, lease_ttl: Option<Duration>) -> Result<Broker> {
        let client = async_nats::ConnectOptions::new()
            .name("lara")
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(5))
            .connect(url)
            .await
            .with_context(|| format!("connecting to NATS at {url}"))?;
        let js = jetstream::new(client.clone());
        let points = get_or_create_stream(&js, POINTS_STREAM, vec!["lara.points.>".into()]).await?;
        let mut results =
            get_or_create_stream(&js, RESULTS_STREAM, RESULTS_SUBJECTS.iter().map(|s| s.to_string()).collect()).await?;
        // A cluster set up before `lara.events.>` existed: add the subject.
        let info = results.get_info().await.map_err(|e| anyhow!("stream {RESULTS_STREAM}: {e}"))?;
        if RESULTS_SUBJECTS.iter().any(|s| !info.config.subjects.iter().any(|x| x == s)) {
            let mut cfg = info.config.clone();
            cfg.subjects = RESULTS_SUBJECTS.iter().map(|s| s.to_string()).collect();
            js.update_stream(cfg).await.map_err(|e| anyhow!("stream {RESULTS_STREAM}: adding subjects: {e}"))?;
            results = js.get_stream(RESULTS_STREAM).await.map_err(|e| anyhow!("stream {RESULTS_STREAM}: {e}"))?;
        }
        let ttl = lease_ttl.unwrap_or(DEFAULT_LEASE_TTL).max(Duration::from_millis(500));
        let leases = kv_bucket(&js, LEASES, ttl).await?;
        let workers = kv_bucket(&js, WORKERS, ttl).await?;
        let snapshots = kv_bucket(&js, SNAPSHOTS, Duration::ZERO).await?;
        let entities = kv_bucket(&js, ENTITIES, Duration::ZERO).await?;
        let config = kv_bucket(&js, CONFIG, Duration::ZERO).await?;
        let models = match js.get_object_store(MODELS).await {
            Ok(s) => s,
            Err(_) => match js
                .create_object_store(object_store::Config {
                    bucket: MODELS.into(),
                    storage: stream::StorageType::File,
                    ..Default::default()
                })
                .await
            {
                Ok(s) => s,
                Err(e) => js.get_object_store(MODELS).await.map_err(|_| anyhow!("object store {MODELS}: {e}"))?,
            },
        };
        let want = partitions.unwrap_or(DEFAULT_PARTITIONS);
        if want == 0 || want > 4096 {
            bail!("partitions must be 1..=4096 (got {want})");
        }
        let _ = config.create("partitions", want.to_string().into()).await;
        let stored = config.get("partitions").await?.context("the cluster's partition count is missing")?;
        let stored: u32 = std::str::from_utf8(&stored)?.trim().parse().context("stored partition count")?;
        if let Some(p) = partitions {
            if p != stored {
                bail!("the cluster was set up with {stored} partitions, not {p}");
            }
        }
        let lease_ttl = leases.status().await.map(|s| s.info.config.max_age).unwrap_or(ttl);
        Ok(Broker {
            client,
            js,
            points,
            results,
            leases,
            workers,
            snapshots,
            entities,
            config,
            models,
            partitions: stored,
            lease_ttl,
        })
    }

    /// Stores a model (`.lara` bytes) under `id`; returns its columns.
    pub async fn put_model(&self, id: &str, bytes: &[u8]) -> Result<Vec<String>> {
        if !valid_id(id) {
            bail!("model id {id:?}: use 1-128 of [A-Za-z0-9_-]");
        }
        let det = lara_vae::Detector::from_bytes(std::path::Path::new(id), bytes)?;
        let mut rd = bytes;
        self.models.put(id, &mut rd).await.map_err(|e| anyhow!("storing model {id}: {e}"))?;
        let cols = det.meta.columns.clone();
        self.config.put(format!("model.{id}"), serde_json::to_vec(&cols)?.into()).await?;
        Ok(cols)
    }

    /// A model's columns (None: no such model).
    pub async fn model_columns(&self, id: &str) -> Result<Option<Vec<String>>> {
        match self.config.get(format!("model.{id}")).await? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// A model's file bytes.
    pub async fn get_model(&self, id: &str) -> Result<Vec<u8>> {
        use tokio::io::AsyncReadExt;
        let mut obj = self.models.get(id).await.map_err(|e| anyhow!("model {id}: {e}"))?;
        let mut out = Vec::new();
        obj.read_to_end(&mut out).await.with_context(|| format!("reading model {id}"))?;
        Ok(out)
    }

    /// Registers an entity; false when it exists already (with another spec: an error).
    pub async fn create_entity(&self, id: &str, spec: &EntitySpec) -> Result<bool> {
        if !valid_id(id) {
            bail!("entity id {id:?}: use 1-128 of [A-Za-z0-9_-]");
        }
        spec.monitor_config()?;
        if self.model_columns(&spec.model).await?.is_none() {
            bail!("no model {:?}", spec.model);
        }
        match self.entities.create(id, serde_json::to_vec(spec)?.into()).await {
            Ok(_) => Ok(true),
            Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {
                let old = self.entity(id).await?;
                if old.as_ref() == Some(spec) {
                    Ok(false)
                } else {
                    bail!("entity {id:?} exists with another model or configuration")
                }
            }
            Err(e) => Err(anyhow!("creating entity {id}: {e}")),
        }
    }

    pub async fn entity(&self, id: &str) -> Result<Option<EntitySpec>> {
        match self.entities.get(id).await? {
            Some(b) => Ok(Some(serde_json::from_slice(&b)?)),
            None => Ok(None),
        }
    }

    /// Publishes rows for an entity; returns (stream sequence, duplicate).
    pub async fn publish_points(&self, entity: &str, rows: &[Vec<f32>], msg_id: Option<&str>) -> Result<(u64, bool)> {
        self.publish_msg(entity, &PointsMsg::rows(rows.to_vec()), msg_id).await
    }

    /// Publishes a points message (rows or a control) on the entity's points subject; returns
    /// (stream sequence, duplicate).
    pub async fn publish_msg(&self, entity: &str, msg: &PointsMsg, msg_id: Option<&str>) -> Result<(u64, bool)> {
        let subject = points_subject(partition_of(entity, self.partitions), entity);
        let payload = serde_json::to_vec(msg)?;
        let mut p = jetstream::message::PublishMessage::build().payload(payload.into());
        if let Some(id) = msg_id {
            p = p.message_id(id);
        }
        let ack = self.js.send_publish(subject, p).await?.await?;
        Ok((ack.sequence, ack.duplicate))
    }

    /// Publishes an operator control ([`CONTROLS`]) for an entity and waits up to `timeout`
    /// for the owning worker's answer ([`EventsMsg`] with this sequence). Returns the stream
    /// sequence and the answer (None: no worker applied it within `timeout`; it stays queued
    /// in the stream and is applied when a worker gets to it).
    pub async fn control(
        &self,
        entity: &str,
        control: &str,
        msg_id: Option<&str>,
        timeout: Duration,
    ) -> Result<(u64, Option<EventsMsg>)> {
        use futures_util::StreamExt;
        if !CONTROLS.contains(&control) {
            bail!("unknown control {control:?} (one of {})", CONTROLS.join(", "));
        }
        // Subscribed before publishing: the answer cannot be missed.
        let mut sub = self.client.subscribe(events_subject(entity)).await?;
        let msg = PointsMsg { control: Some(control.to_string()), ..Default::default() };
        let (seq, dup) = self.publish_msg(entity, &msg, msg_id).await?;
        if dup {
            // A retry: the answer may be stored already.
            if let Some(a) = self.find_events(entity, seq).await? {
                return Ok((seq, Some(a)));
            }
        }
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            match tokio::time::timeout_at(deadline, sub.next()).await {
                Ok(Some(m)) => {
                    if let Ok(a) = serde_json::from_slice::<EventsMsg>(&m.payload) {
                        if a.points_seq == seq {
                            return Ok((seq, Some(a)));
                        }
                    }
                }
                Ok(None) | Err(_) => return Ok((seq, self.find_events(entity, seq).await?)),
            }
        }
    }

    /// The stored [`EventsMsg`] answering points message `seq` of `entity`.
    pub async fn find_events(&self, entity: &str, seq: u64) -> Result<Option<EventsMsg>> {
        Ok(self.events(entity).await?.into_iter().find(|a| a.points_seq == seq))
    }

    /// Every [`EventsMsg`] of an entity, in order.
    pub async fn events(&self, entity: &str) -> Result<Vec<EventsMsg>> {
        let mut out = Vec::new();
        for (_, payload) in self.read_subject(&self.results, &events_subject(entity)).await? {
            out.push(serde_json::from_slice(&payload)?);
        }
        Ok(out)
    }

    /// Removes what the cluster holds of an entity once its owner dropped it (the `delete`
    /// control at `seq` was answered): its spec, its snapshot, its points up to `seq`, its
    /// results and decisions. Its alarms stay on `lara.alarms` (a shared subject).
    pub async fn remove_entity(&self, entity: &str, seq: u64) -> Result<()> {
        self.entities.delete(entity).await.map_err(|e| anyhow!("deleting entity {entity}: {e}"))?;
        self.snapshots.delete(entity).await.map_err(|e| anyhow!("deleting the snapshot of {entity}: {e}"))?;
        let points = points_subject(partition_of(entity, self.partitions), entity);
        self.points.purge().filter(points).sequence(seq + 1).await.map_err(|e| anyhow!("purging the points of {entity}: {e}"))?;
        for subject in [scores_subject(entity), events_subject(entity)] {
            self.results.purge().filter(subject.clone()).await.map_err(|e| anyhow!("purging {subject}: {e}"))?;
        }
        Ok(())
    }

    /// Sets the retention of `LARA_RESULTS`: results, decisions and alarms older than
    /// `max_age` or beyond `max_bytes` (oldest first) are removed (None: unlimited). The
    /// duplicate window shrinks to `max_age` when that is shorter. Keep `max_age` well above
    /// the lease TTL and the time a takeover takes: a new owner re-publishes re-scored rows
    /// whose results already expired.
    pub async fn set_results_retention(&self, max_age: Option<Duration>, max_bytes: Option<u64>) -> Result<()> {
        let info = self.results.get_info().await.map_err(|e| anyhow!("stream {RESULTS_STREAM}: {e}"))?;
        let mut cfg = info.config.clone();
        cfg.max_age = max_age.unwrap_or(Duration::ZERO);
        cfg.max_bytes = max_bytes.map(|b| b.min(i64::MAX as u64) as i64).unwrap_or(-1);
        cfg.duplicate_window = match max_age {
            Some(a) if !a.is_zero() => DUPLICATE_WINDOW.min(a),
            _ => DUPLICATE_WINDOW,
        };
        if cfg.max_age != info.config.max_age
            || cfg.max_bytes != info.config.max_bytes
            || cfg.duplicate_window != info.config.duplicate_window
        {
            self.js.update_stream(cfg).await.map_err(|e| anyhow!("stream {RESULTS_STREAM}: retention: {e}"))?;
        }
        Ok(())
    }

    /// The last message on a subject of a stream (None when there is none).
    pub async fn last_on(&self, stream: &stream::Stream, subject: &str) -> Result<Option<jetstream::message::StreamMessage>> {
        match stream.get_last_raw_message_by_subject(subject).await {
            Ok(m) => Ok(Some(m)),
            Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
            Err(e) => Err(anyhow!("last message on {subject}: {e}")),
        }
    }

    /// Every message on `subject` of `stream`, in order (an ordered consumer read up to the
    /// last message that was there when the call began).
    pub async fn read_subject(&self, stream: &stream::Stream, subject: &str) -> Result<Vec<(u64, bytes::Bytes)>> {
        use futures_util::StreamExt;
        let Some(last) = self.last_on(stream, subject).await? else { return Ok(Vec::new()) };
        let consumer = stream
            .create_consumer(jetstream::consumer::pull::OrderedConfig {
                filter_subject: subject.to_string(),
                deliver_policy: jetstream::consumer::DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(|e| anyhow!("consumer on {subject}: {e}"))?;
        let mut msgs = consumer.messages().await.map_err(|e| anyhow!("consumer on {subject}: {e}"))?;
        let mut out = Vec::new();
        loop {
            let m = tokio::time::timeout(Duration::from_secs(10), msgs.next())
                .await
                .map_err(|_| anyhow!("reading {subject}: timed out"))?
                .ok_or_else(|| anyhow!("reading {subject}: consumer ended"))?
                .map_err(|e| anyhow!("reading {subject}: {e}"))?;
            let seq = m.info().map_err(|e| anyhow!("{e}"))?.stream_sequence;
            out.push((seq, m.payload.clone()));
            if seq >= last.sequence {
                break;
            }
        }
        Ok(out)
    }

    /// The scored rows of an entity, in the order published (every copy in the stream: a
    /// row that appeared twice would show twice), each with its `timestamp` when its points
    /// message had one.
    pub async fn scores(&self, entity: &str) -> Result<Vec<serde_json::Value>> {
        let mut rows = Vec::new();
        for (_, payload) in self.read_subject(&self.results, &scores_subject(entity)).await? {
            let v: serde_json::Value = serde_json::from_slice(&payload)?;
            if let Some(a) = v["rows"].as_array() {
                let ts = v["timestamps"].as_array().filter(|t| t.len() == a.len());
                for (i, r) in a.iter().enumerate() {
                    let mut r = r.clone();
                    if let Some(t) = ts.and_then(|t| t[i].as_str()) {
                        r["timestamp"] = t.into();
                    }
                    rows.push(r);
                }
            }
        }
        Ok(rows)
    }

    /// Every alarm, in order.
    pub async fn alarms(&self) -> Result<Vec<serde_json::Value>> {
        let mut out = Vec::new();
        for (_, payload) in self.read_subject(&self.results, ALARMS_SUBJECT).await? {
            out.push(serde_json::from_slice(&payload)?);
        }
        Ok(out)
    }

    /// The ids of the live workers (a heartbeat in `lara-workers` not yet expired nor deleted),
    /// sorted. Read from the bucket's subject counts and one get per key: every step is a
    /// request with a timeout. (The KV `keys()` iterator can wait forever when a key expires
    /// between the consumer's creation and its delivery, as a dead worker's heartbeat does.)
    pub async fn live_workers(&self) -> Result<Vec<String>> {
        use futures_util::StreamExt;
        let prefix = format!("$KV.{WORKERS}.");
        let mut subjects = self
            .workers
            .stream
            .info_with_subjects(format!("{prefix}>"))
            .await
            .map_err(|e| anyhow!("{WORKERS}: {e}"))?;
        let mut keys = Vec::new();
        while let Some(s) = subjects.next().await {
            let (subject, _) = s.map_err(|e| anyhow!("{WORKERS}: {e}"))?;
            if let Some(k) = subject.strip_prefix(&prefix) {
                keys.push(k.to_string());
            }
        }
        let mut live = Vec::new();
        for k in keys {
            // A delete marker (a worker that stopped) or an entry expired meanwhile: not live.
            if let Some(e) = self.workers.entry(&k).await? {
                if e.operation == kv::Operation::Put {
                    live.push(k);
                }
            }
        }
        live.sort();
        Ok(live)
    }

    /// Partition → owner (None: free), and the live workers.
    pub async fn cluster_view(&self) -> Result<serde_json::Value> {
        let mut owners = serde_json::Map::new();
        for p in 0..self.partitions {
            if let Some(e) = self.leases.entry(format!("p{p}")).await? {
                if e.operation == kv::Operation::Put {
                    owners.insert(p.to_string(), String::from_utf8_lossy(&e.value).into_owned().into());
                }
            }
        }
        let workers = self.live_workers().await?;
        let stats = |i: &stream::Info| {
            serde_json::json!({
                "messages": i.state.messages,
                "bytes": i.state.bytes,
                "first_seq": i.state.first_sequence,
                "last_seq": i.state.last_sequence,
                "max_age_s": i.config.max_age.as_secs_f64(),
                "max_bytes": i.config.max_bytes,
            })
        };
        let points = self.points.get_info().await.map_err(|e| anyhow!("{POINTS_STREAM}: {e}"))?;
        let results = self.results.get_info().await.map_err(|e| anyhow!("{RESULTS_STREAM}: {e}"))?;
        Ok(serde_json::json!({
            "streams": { POINTS_STREAM: stats(&points), RESULTS_STREAM: stats(&results) },
            "partitions": self.partitions,
            "lease_ttl_ms": self.lease_ttl.as_millis() as u64,
            "owners": owners,
            "workers": workers,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_messages_keep_their_wire_format() {
        // A rows message is what the first slice wrote; old messages still parse.
        let m = PointsMsg::rows(vec![vec![1.0, 2.0]]);
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"rows":[[1.0,2.0]]}"#);
        let old: PointsMsg = serde_json::from_str(r#"{"rows":[[3.0]]}"#).unwrap();
        assert_eq!(old.rows, vec![vec![3.0]]);
        assert!(old.control.is_none() && old.timestamps.is_none());
        let c: PointsMsg = serde_json::from_str(r#"{"control":"rollback"}"#).unwrap();
        assert!(c.rows.is_empty() && c.control.as_deref() == Some("rollback"));
    }

    #[test]
    fn alarms_are_the_single_nodes_record() {
        let s = Scored {
            row: 7,
            score: 3.5,
            threshold: 1.0,
            is_anomaly: true,
            p_anomaly: 0.99,
            state: lara_stream::State::Normal,
            model_version: 1,
            top_dims: vec![0],
        };
        let a = alarm_record("web-1", &s);
        assert_eq!(a["id"], "web-1:7");
        assert_eq!(a["entity"], "web-1");
        assert_eq!(a["row"], 7);
        assert_eq!(a["is_anomaly"], true);
    }

    #[test]
    fn partitions_and_ids() {
        assert_eq!(partition_of("web-01", 64), partition_of("web-01", 64));
        assert!(partition_of("x", 8) < 8);
        assert!(valid_id("web-01_a") && !valid_id("a.b") && !valid_id("") && !valid_id(&"x".repeat(129)));
        assert_eq!(points_subject(3, "e"), "lara.points.3.e");
        assert_eq!(events_subject("e"), "lara.events.e");
    }
}
