//! The durable embedded store (redb, one file in `--data-dir`): models, entity snapshots,
//! results and events. Every ingest is one write transaction (snapshot + results + events),
//! committed before the request is answered: an acknowledged row is never lost, and a
//! restart restores every entity exactly.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::ServerError;

const MODELS: TableDefinition<&str, &[u8]> = TableDefinition::new("models");
const MODEL_META: TableDefinition<&str, &[u8]> = TableDefinition::new("model_meta");
const ENTITIES: TableDefinition<&str, &[u8]> = TableDefinition::new("entities");
const SNAPSHOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("snapshots");
const RESULTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("results");
const EVENTS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("events");
/// An entity's raw rows (f32 little-endian), the history `POST /v1/models/{id}/train` reads.
const ROWS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("rows");
/// Alarms not yet delivered to a webhook: key = hook (u32 BE) + sequence (u64 BE).
const OUTBOX: TableDefinition<&[u8], &[u8]> = TableDefinition::new("outbox");
/// Alarms a webhook gave up on, with the last error (same keys as the outbox).
const DEAD_LETTERS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("dead_letters");

fn outbox_key(hook: u32, seq: u64) -> [u8; 12] {
    let mut k = [0u8; 12];
    k[..4].copy_from_slice(&hook.to_be_bytes());
    k[4..].copy_from_slice(&seq.to_be_bytes());
    k
}

/// Key of an entity's row `i`: the entity id, a 0 byte, `i` big-endian (range scans in order).
pub fn row_key(entity: &str, i: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(entity.len() + 9);
    k.extend_from_slice(entity.as_bytes());
    k.push(0);
    k.extend_from_slice(&i.to_be_bytes());
    k
}

/// A stored raw row: its values as f32 little-endian (the inverse of the encoding in
/// `write_batch`).
fn decode_row(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}

fn err(e: impl std::fmt::Display) -> ServerError {
    ServerError::Store(e.to_string())
}

/// What one ingest writes.
pub struct IngestWrite {
    pub entity: String,
    /// The entity's description (last timestamp, counters).
    pub meta: Vec<u8>,
    /// The monitor's new snapshot, when this ingest takes one (else the stored snapshot plus
    /// the stored rows after it restore the monitor).
    pub snapshot: Option<Vec<u8>>,
    /// `(row, JSON)` results.
    pub results: Vec<(u64, Vec<u8>)>,
    /// `(sequence, JSON)` events.
    pub events: Vec<(u64, Vec<u8>)>,
    /// `(row, values)` raw rows.
    pub rows: Vec<(u64, Vec<f32>)>,
    /// Alarms (JSON) to put in every webhook's outbox.
    pub alarms: Vec<Vec<u8>>,
    /// Rows `[from, to)` whose raw values and results are deleted (retention).
    pub prune: Option<(u64, u64)>,
}

/// Group commit: ingests that arrive while a transaction is being written wait, and the next
/// writer commits all of them in one transaction (one fsync).
#[derive(Default)]
struct Group {
    queue: Vec<(u64, IngestWrite)>,
    done: std::collections::HashMap<u64, Result<(), String>>,
    writing: bool,
    next: u64,
}

pub struct Store {
    db: Database,
    group: std::sync::Mutex<Group>,
    group_cv: std::sync::Condvar,
    /// Webhooks configured: each alarm goes into this many outboxes.
    hooks: u32,
    next_outbox: std::sync::atomic::AtomicU64,
}

impl Store {
    /// Opens (or creates) `dir/lara.redb`; `hooks` webhooks get an outbox each.
    pub fn open(dir: &Path, hooks: u32) -> Result<Store, ServerError> {
        std::fs::create_dir_all(dir).map_err(|e| ServerError::Store(format!("{}: {e}", dir.display())))?;
        let path = dir.join("lara.redb");
        let db = Database::create(&path).map_err(|e| ServerError::Store(format!("{}: {e}", path.display())))?;
        // Create the tables so that readers never see them missing.
        let w = db.begin_write().map_err(err)?;
        for t in [MODELS, MODEL_META, ENTITIES, SNAPSHOTS] {
            w.open_table(t).map_err(err)?;
        }
        for t in [RESULTS, EVENTS, ROWS, DEAD_LETTERS] {
            w.open_table(t).map_err(err)?;
        }
        // Outbox sequences continue after the highest one stored (any hook).
        let mut next = 0u64;
        for item in w.open_table(OUTBOX).map_err(err)?.iter().map_err(err)? {
            let (k, _) = item.map_err(err)?;
            next = next.max(u64::from_be_bytes(k.value()[4..12].try_into().unwrap_or_default()) + 1);
        }
        w.commit().map_err(err)?;
        Ok(Store {
            db,
            group: Default::default(),
            group_cv: Default::default(),
            hooks,
            next_outbox: std::sync::atomic::AtomicU64::new(next),
        })
    }

    fn get(&self, t: TableDefinition<&str, &[u8]>, k: &str) -> Result<Option<Vec<u8>>, ServerError> {
        let r = self.db.begin_read().map_err(err)?;
        let table = r.open_table(t).map_err(err)?;
        Ok(table.get(k).map_err(err)?.map(|v| v.value().to_vec()))
    }

    fn all(&self, t: TableDefinition<&str, &[u8]>) -> Result<Vec<(String, Vec<u8>)>, ServerError> {
        let r = self.db.begin_read().map_err(err)?;
        let table = r.open_table(t).map_err(err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(err)? {
            let (k, v) = item.map_err(err)?;
            out.push((k.value().to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    pub fn put_model(&self, id: &str, bytes: &[u8], meta: &[u8]) -> Result<(), ServerError> {
        let w = self.db.begin_write().map_err(err)?;
        w.open_table(MODELS).map_err(err)?.insert(id, bytes).map_err(err)?;
        w.open_table(MODEL_META).map_err(err)?.insert(id, meta).map_err(err)?;
        w.commit().map_err(err)
    }
    pub fn model(&self, id: &str) -> Result<Option<Vec<u8>>, ServerError> {
        self.get(MODELS, id)
    }
    pub fn models(&self) -> Result<Vec<(String, Vec<u8>)>, ServerError> {
        self.all(MODELS)
    }
    pub fn model_metas(&self) -> Result<Vec<(String, Vec<u8>)>, ServerError> {
        self.all(MODEL_META)
    }
    pub fn delete_model(&self, id: &str) -> Result<(), ServerError> {
        let w = self.db.begin_write().map_err(err)?;
        w.open_table(MODELS).map_err(err)?.remove(id).map_err(err)?;
        w.open_table(MODEL_META).map_err(err)?.remove(id).map_err(err)?;
        w.commit().map_err(err)
    }

    /// Creates an entity: its description and its first snapshot.
    pub fn put_entity(&self, id: &str, meta: &[u8], snapshot: &[u8]) -> Result<(), ServerError> {
        let w = self.db.begin_write().map_err(err)?;
        w.open_table(ENTITIES).map_err(err)?.insert(id, meta).map_err(err)?;
        w.open_table(SNAPSHOTS).map_err(err)?.insert(id, snapshot).map_err(err)?;
        w.commit().map_err(err)
    }
    pub fn entities(&self) -> Result<Vec<(String, Vec<u8>)>, ServerError> {
        self.all(ENTITIES)
    }
    pub fn snapshot(&self, id: &str) -> Result<Option<Vec<u8>>, ServerError> {
        self.get(SNAPSHOTS, id)
    }

    /// Removes an entity with its results and events.
    pub fn delete_entity(&self, id: &str) -> Result<(), ServerError> {
        let w = self.db.begin_write().map_err(err)?;
        w.open_table(ENTITIES).map_err(err)?.remove(id).map_err(err)?;
        w.open_table(SNAPSHOTS).map_err(err)?.remove(id).map_err(err)?;
        let (lo, hi) = (row_key(id, 0), row_key(id, u64::MAX));
        for t in [RESULTS, EVENTS, ROWS] {
            let mut table = w.open_table(t).map_err(err)?;
            let keys: Vec<Vec<u8>> = table
                .range(lo.as_slice()..=hi.as_slice())
                .map_err(err)?
                .filter_map(|r| r.ok().map(|(k, _)| k.value().to_vec()))
                .collect();
            for k in keys {
                table.remove(k.as_slice()).map_err(err)?;
            }
        }
        w.commit().map_err(err)
    }

    /// One ingest, atomically and durably: when this returns `Ok`, the write is on disk.
    /// Concurrent ingests share a transaction (group commit); if it fails, all of them fail
    /// and none is stored.
    pub fn ingest(&self, x: IngestWrite) -> Result<(), ServerError> {
        let mut g = self.group.lock().expect("group lock");
        let ticket = g.next;
        g.next += 1;
        g.queue.push((ticket, x));
        loop {
            if let Some(r) = g.done.remove(&ticket) {
                return r.map_err(ServerError::Store);
            }
            if !g.writing {
                g.writing = true;
                let batch = std::mem::take(&mut g.queue);
                drop(g);
                let r = self.write_batch(&batch).map_err(|e| e.to_string());
                g = self.group.lock().expect("group lock");
                for (t, _) in &batch {
                    g.done.insert(*t, r.clone());
                }
                g.writing = false;
                self.group_cv.notify_all();
                continue;
            }
            g = self.group_cv.wait(g).expect("group lock");
        }
    }

    fn write_batch(&self, batch: &[(u64, IngestWrite)]) -> Result<(), ServerError> {
        let w = self.db.begin_write().map_err(err)?;
        {
            let mut snaps = w.open_table(SNAPSHOTS).map_err(err)?;
            let mut ents = w.open_table(ENTITIES).map_err(err)?;
            let mut results = w.open_table(RESULTS).map_err(err)?;
            let mut events = w.open_table(EVENTS).map_err(err)?;
            let mut rows = w.open_table(ROWS).map_err(err)?;
            let mut outbox = w.open_table(OUTBOX).map_err(err)?;
            let mut buf = Vec::new();
            for (_, x) in batch {
                if let Some(snap) = &x.snapshot {
                    snaps.insert(x.entity.as_str(), snap.as_slice()).map_err(err)?;
                }
                ents.insert(x.entity.as_str(), x.meta.as_slice()).map_err(err)?;
                for (i, v) in &x.results {
                    results.insert(row_key(&x.entity, *i).as_slice(), v.as_slice()).map_err(err)?;
                }
                for (i, v) in &x.events {
                    events.insert(row_key(&x.entity, *i).as_slice(), v.as_slice()).map_err(err)?;
                }
                if let Some((from, to)) = x.prune {
                    for i in from..to {
                        let k = row_key(&x.entity, i);
                        results.remove(k.as_slice()).map_err(err)?;
                        rows.remove(k.as_slice()).map_err(err)?;
                    }
                }
                for (i, row) in &x.rows {
                    buf.clear();
                    row.iter().for_each(|v| buf.extend_from_slice(&v.to_le_bytes()));
                    rows.insert(row_key(&x.entity, *i).as_slice(), buf.as_slice()).map_err(err)?;
                }
                if self.hooks > 0 {
                    for a in &x.alarms {
                        let seq = self.next_outbox.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        for hook in 0..self.hooks {
                            outbox.insert(outbox_key(hook, seq).as_slice(), a.as_slice()).map_err(err)?;
                        }
                    }
                }
            }
        }
        w.commit().map_err(err)
    }

    /// The raw rows `[from, to]` of an entity, at most `limit`.
    pub fn rows(&self, entity: &str, from: u64, to: u64, limit: usize) -> Result<Vec<Vec<f32>>, ServerError> {
        Ok(self
            .range(ROWS, entity, from, to, limit)?
            .into_iter()
            .map(|b| decode_row(&b))
            .collect())
    }

    /// The raw rows at `rows` of an entity (None where not stored), in one read transaction.
    pub fn rows_at(&self, entity: &str, rows: &[u64]) -> Result<Vec<Option<Vec<f32>>>, ServerError> {
        let r = self.db.begin_read().map_err(err)?;
        let table = r.open_table(ROWS).map_err(err)?;
        let mut out = Vec::with_capacity(rows.len());
        for &i in rows {
            out.push(table.get(row_key(entity, i).as_slice()).map_err(err)?.map(|v| decode_row(v.value())));
        }
        Ok(out)
    }

    /// The oldest undelivered alarms of webhook `hook`: `(sequence, JSON)`.
    pub fn outbox(&self, hook: u32, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, ServerError> {
        let r = self.db.begin_read().map_err(err)?;
        let table = r.open_table(OUTBOX).map_err(err)?;
        let (lo, hi) = (outbox_key(hook, 0), outbox_key(hook, u64::MAX));
        let mut out = Vec::new();
        for item in table.range(lo.as_slice()..=hi.as_slice()).map_err(err)? {
            let (k, v) = item.map_err(err)?;
            let seq = u64::from_be_bytes(k.value()[4..12].try_into().unwrap_or_default());
            out.push((seq, v.value().to_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Removes a delivered alarm from webhook `hook`'s outbox; with `dead` (a record of why it
    /// gave up) it moves to the dead letters in the same transaction.
    pub fn outbox_done(&self, hook: u32, seq: u64, dead: Option<&[u8]>) -> Result<(), ServerError> {
        let w = self.db.begin_write().map_err(err)?;
        let k = outbox_key(hook, seq);
        w.open_table(OUTBOX).map_err(err)?.remove(k.as_slice()).map_err(err)?;
        if let Some(d) = dead {
            w.open_table(DEAD_LETTERS).map_err(err)?.insert(k.as_slice(), d).map_err(err)?;
        }
        w.commit().map_err(err)
    }

    /// Every dead-letter record (JSON), oldest first.
    pub fn dead_letters(&self, limit: usize) -> Result<Vec<Vec<u8>>, ServerError> {
        let r = self.db.begin_read().map_err(err)?;
        let table = r.open_table(DEAD_LETTERS).map_err(err)?;
        let mut out = Vec::new();
        for item in table.iter().map_err(err)? {
            out.push(item.map_err(err)?.1.value().to_vec());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Bytes of the store file on disk.
    pub fn file_bytes(&self, dir: &Path) -> u64 {
        std::fs::metadata(dir.join("lara.redb")).map(|m| m.len()).unwrap_or(0)
    }

    fn range(
        &self,
        t: TableDefinition<&[u8], &[u8]>,
        entity: &str,
        from: u64,
        to: u64,
        limit: usize,
    ) -> Result<Vec<Vec<u8>>, ServerError> {
        let r = self.db.begin_read().map_err(err)?;
        let table = r.open_table(t).map_err(err)?;
        let (lo, hi) = (row_key(entity, from), row_key(entity, to));
        let mut out = Vec::new();
        for item in table.range(lo.as_slice()..=hi.as_slice()).map_err(err)? {
            let (_, v) = item.map_err(err)?;
            out.push(v.value().to_vec());
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Stored results of rows `[from, to]` (JSON each), at most `limit`.
    pub fn results(&self, entity: &str, from: u64, to: u64, limit: usize) -> Result<Vec<Vec<u8>>, ServerError> {
        self.range(RESULTS, entity, from, to, limit)
    }
    pub fn events(&self, entity: &str, limit: usize) -> Result<Vec<Vec<u8>>, ServerError> {
        self.range(EVENTS, entity, 0, u64::MAX, limit)
    }
}
