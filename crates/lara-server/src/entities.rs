//! Entities: creation, ingest and streaming detection, stored results, operator controls.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};

use lara_stream::{Monitor, MonitorConfig, Policy, Scored};
use serde_json::{json, Value};

use crate::alarms::alarm_json;
use crate::api::{bad, ok_json, Answer, Req};
use crate::store::IngestWrite;
use crate::{Entity, EntityInfo, Service};


/// The live entity `id` (its own lock: ingests of different entities run in parallel).
pub(crate) fn entity(s: &Service, id: &str) -> Option<Arc<Mutex<Entity>>> {
    s.entities.read().expect("entities lock").get(id).cloned()
}

pub(crate) fn entity_json(e: &Entity) -> Value {
    json!({
        "id": e.info.id,
        "model": e.info.model,
        "state": e.monitor.state(),
        "model_version": e.monitor.version(),
        "rows": e.info.rows,
        "alarms": e.info.alarms,
        "last_alarm_row": e.info.last_alarm_row,
        "last_timestamp": e.info.last_timestamp,
        "policy": e.info.policy,
        "slots": e.info.slots,
        "cold_start": e.info.cold_start,
        "events": e.info.events,
    })
}

pub(crate) fn list_entities(s: &Arc<Service>, _: &mut Req) -> Answer {
    let all: Vec<Arc<Mutex<Entity>>> = s.entities.read().expect("entities lock").values().cloned().collect();
    let mut v: Vec<Value> = all.iter().map(|e| entity_json(&e.lock().expect("entity lock"))).collect();
    v.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
    ok_json(200, &json!({ "entities": v }))
}

pub(crate) fn get_entity(s: &Arc<Service>, r: &mut Req) -> Answer {
    match entity(s, &r.params[0]) {
        Some(e) => ok_json(200, &entity_json(&e.lock().expect("entity lock"))),
        None => bad(404, format!("no entity {:?}", r.params[0])),
    }
}

pub(crate) fn put_entity(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = r.params[0].clone();
    let v: Value = match serde_json::from_slice(&r.body) {
        Ok(v) => v,
        Err(e) => return bad(400, format!("body: not JSON ({e})")),
    };
    let known = ["model", "base", "policy", "slots"];
    if let Some(k) = v.as_object().and_then(|o| o.keys().find(|k| !known.contains(&k.as_str()))) {
        return bad(400, format!("body: unknown field {k:?} (expected model or base, policy, slots)"));
    }
    let (model, cold) = match (v["model"].as_str(), v["base"].as_str()) {
        (Some(m), None) => (m.to_string(), false),
        (None, Some(b)) => (b.to_string(), true),
        _ => return bad(400, "body: give exactly one of \"model\" or \"base\" (a model id)"),
    };
    let policy: Policy = match v["policy"].as_str().unwrap_or("adapt").parse() {
        Ok(p) => p,
        Err(e) => return bad(400, format!("body: policy: {e}")),
    };
    let slots = match &v["slots"] {
        Value::Null => 40,
        x => match x.as_u64() {
            Some(k) if k > 0 && k <= 100_000 => k as usize,
            _ => return bad(400, "body: slots must be a positive integer"),
        },
    };
    match create_entity(s, &id, &model, cold, policy, slots) {
        Ok(e) => ok_json(201, &entity_json(&e.lock().expect("entity lock"))),
        Err(a) => a,
    }
}

/// Creates entity `id` on `model` (as a shared base with a LARA cold start when `cold`) and
/// stores its first snapshot.
pub(crate) fn create_entity(
    s: &Service,
    id: &str,
    model: &str,
    cold: bool,
    policy: Policy,
    slots: usize,
) -> Result<Arc<Mutex<Entity>>, Answer> {
    // The fingerprint was computed once when the model was installed.
    let (base, fingerprint) = match s.models.lock().expect("models lock").get(model) {
        Some(m) => (m.det.clone(), m.info.sha256.clone()),
        None => return Err(bad(404, format!("no model {model:?}"))),
    };
    let mut ents = s.entities.write().expect("entities lock");
    if ents.contains_key(id) {
        return Err(bad(409, format!("entity {id:?} exists; delete it first")));
    }
    let cfg = MonitorConfig { policy, slots, cold_start: cold, ..MonitorConfig::default() };
    let monitor = Monitor::new_shared(base, fingerprint, cfg).map_err(|e| bad(422, e.to_string()))?;
    let info = EntityInfo {
        id: id.to_string(),
        model: model.to_string(),
        cold_start: cold,
        policy: policy.to_string(),
        slots,
        rows: 0,
        alarms: 0,
        last_alarm_row: None,
        last_timestamp: None,
        events: 0,
        in_episode: false,
        snapshot_row: 0,
        pruned_below: 0,
    };
    let snap = monitor.snapshot().map_err(|e| bad(500, e.to_string()))?;
    s.store
        .put_entity(id, &serde_json::to_vec(&info).unwrap_or_default(), &snap)
        .map_err(|e| bad(500, e.to_string()))?;
    let e = Arc::new(Mutex::new(Entity { info, monitor }));
    ents.insert(id.to_string(), e.clone());
    Ok(e)
}

pub(crate) fn delete_entity(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = &r.params[0];
    let mut ents = s.entities.write().expect("entities lock");
    if !ents.contains_key(id) {
        return bad(404, format!("no entity {id:?}"));
    }
    if let Err(e) = s.store.delete_entity(id) {
        return bad(500, e.to_string());
    }
    ents.remove(id);
    Answer { status: 204, content_type: "application/json", body: Vec::new() }
}

/// Rows and optional timestamps of an ingest body.
pub type Points = (Vec<Vec<f32>>, Option<Vec<String>>);

/// The rows (and timestamps) of a `POST /v1/entities/{id}/points` body for a model with
/// `columns`: JSON `{"rows": [[..]], "timestamps": [..]}` or `text/csv` with the model's columns
/// (+ `timestamp`); a 400 answer naming the bad field otherwise. Public for the cluster front.
pub fn parse_points(r: &Req, columns: &[String]) -> Result<Points, Answer> {
    if r.content_type.starts_with("text/csv") {
        let mut rd = csv::ReaderBuilder::new().flexible(false).from_reader(r.body.as_slice());
        let header: Vec<String> = rd
            .headers()
            .map_err(|e| bad(400, format!("CSV header: {e}")))?
            .iter()
            .map(|h| h.trim().to_string())
            .collect();
        let mut idx = vec![usize::MAX; columns.len()];
        let mut ts_col = None;
        for (j, h) in header.iter().enumerate() {
            if h == "timestamp" {
                ts_col = Some(j);
            } else if let Some(k) = columns.iter().position(|c| c == h) {
                idx[k] = j;
            } else {
                return Err(bad(
                    400,
                    format!("CSV header: unknown column {h:?} (the model's columns: {})", columns.join(", ")),
                ));
            }
        }
        if let Some(k) = idx.iter().position(|&j| j == usize::MAX) {
            return Err(bad(400, format!("CSV header: missing column {:?}", columns[k])));
        }
        let mut rows = Vec::new();
        let mut ts = Vec::new();
        for (i, rec) in rd.records().enumerate() {
            let line = i + 2;
            let rec = rec.map_err(|e| bad(400, format!("CSV line {line}: {e}")))?;
            let mut row = Vec::with_capacity(columns.len());
            for (k, &j) in idx.iter().enumerate() {
                let cell = rec.get(j).unwrap_or("").trim();
                let v: f32 = cell.parse().map_err(|_| {
                    bad(400, format!("CSV line {line}, column {:?}: {cell:?} is not a number", columns[k]))
                })?;
                if !v.is_finite() {
                    return Err(bad(400, format!("CSV line {line}, column {:?}: {cell:?} is not finite", columns[k])));
                }
                row.push(v);
            }
            rows.push(row);
            if let Some(j) = ts_col {
                ts.push(rec.get(j).unwrap_or("").trim().to_string());
            }
        }
        return Ok((rows, ts_col.map(|_| ts)));
    }
    // The common case parses straight into numbers; anything else takes the slower path
    // below, which names the bad field.
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Fast {
        rows: Vec<Vec<f32>>,
        timestamps: Option<Vec<String>>,
    }
    if let Ok(f) = serde_json::from_slice::<Fast>(&r.body) {
        let ragged = f.rows.iter().position(|row| row.len() != columns.len());
        let ts_ok = f.timestamps.as_ref().is_none_or(|t| t.len() == f.rows.len());
        let finite = f.rows.iter().all(|row| row.iter().all(|v| v.is_finite()));
        if ragged.is_none() && ts_ok && finite {
            return Ok((f.rows, f.timestamps));
        }
    }
    let v: Value = serde_json::from_slice(&r.body)
        .map_err(|e| bad(400, format!("body: not JSON ({e}); send JSON or text/csv")))?;
    let arr = v["rows"].as_array().ok_or_else(|| bad(400, "body: \"rows\" must be an array of rows"))?;
    let mut rows = Vec::with_capacity(arr.len());
    for (i, row) in arr.iter().enumerate() {
        let cells = row.as_array().ok_or_else(|| bad(400, format!("rows[{i}]: not an array")))?;
        if cells.len() != columns.len() {
            return Err(bad(
                400,
                format!("rows[{i}]: {} values, the model has {} columns", cells.len(), columns.len()),
            ));
        }
        let mut out = Vec::with_capacity(cells.len());
        for (k, c) in cells.iter().enumerate() {
            let x = c
                .as_f64()
                .ok_or_else(|| bad(400, format!("rows[{i}], column {:?}: {c} is not a number", columns[k])))?;
            out.push(x as f32);
        }
        rows.push(out);
    }
    let ts = match &v["timestamps"] {
        Value::Null => None,
        Value::Array(a) => {
            if a.len() != rows.len() {
                return Err(bad(400, format!("timestamps: {} values for {} rows", a.len(), rows.len())));
            }
            Some(a.iter().map(|t| t.as_str().map(str::to_string).unwrap_or_else(|| t.to_string())).collect())
        }
        _ => return Err(bad(400, "timestamps: must be an array")),
    };
    Ok((rows, ts))
}

/// Strictly later: numerically when both are numbers, else as text (ISO 8601 sorts).
pub(crate) fn later(a: &str, b: &str) -> bool {
    match (a.parse::<f64>(), b.parse::<f64>()) {
        (Ok(x), Ok(y)) => x > y,
        _ => a > b,
    }
}

pub(crate) fn post_points(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = r.params[0].clone();
    let Some(shared) = entity(s, &id) else { return bad(404, format!("no entity {id:?}")) };
    let mut guard = shared.lock().expect("entity lock");
    let ent = &mut *guard;
    let columns = ent.monitor.columns().to_vec();
    let (rows, ts) = match parse_points(r, &columns) {
        Ok(x) => x,
        Err(a) => return a,
    };
    match ingest(s, ent, rows, ts) {
        Ok(out) => ok_json(200, &json!({ "results": out })),
        Err(a) => a,
    }
}

/// Scores `rows` (with optional timestamps, strictly increasing and after the entity's last
/// one) on a copy of the entity's monitor, stores rows, results, events, alarms and the new
/// snapshot in one transaction, then swaps the copy in and publishes the alarms. Returns the
/// results as JSON, one per row.
pub(crate) fn ingest(
    s: &Service,
    ent: &mut Entity,
    rows: Vec<Vec<f32>>,
    ts: Option<Vec<String>>,
) -> Result<Vec<Value>, Answer> {
    if rows.is_empty() {
        return Err(bad(400, "no rows"));
    }
    if rows.len() > s.max_rows {
        return Err(bad(413, format!("{} rows in one request; the limit is {}", rows.len(), s.max_rows)));
    }
    // Time order: every timestamp strictly after the previous one (409 otherwise).
    if let Some(ts) = &ts {
        let mut prev = ent.info.last_timestamp.clone();
        for (i, t) in ts.iter().enumerate() {
            if let Some(p) = &prev {
                if !later(t, p) {
                    return Err(bad(409, format!("row {}: timestamp {t:?} is not after {p:?} (rows must arrive in time order, without duplicates)", i + 1)));
                }
            }
            prev = Some(t.clone());
        }
    }
    // Score on a copy; it replaces the live monitor only once the store has committed.
    let mut mon = ent.monitor.clone();
    let results = mon.push(&rows).map_err(|e| bad(400, e.to_string()))?;
    let events = mon.drain_events();
    let mut info = ent.info.clone();
    let out: Vec<Value> =
        results.iter().enumerate().map(|(i, sc)| scored_json(sc, ts.as_ref().map(|t| t[i].as_str()))).collect();
    let anomalous = results.iter().filter(|x| x.is_anomaly).count() as u64;
    // An alarm is the first anomalous row of an episode.
    let mut alarms = Vec::new();
    for (sc, v) in results.iter().zip(&out) {
        if sc.is_anomaly && !info.in_episode {
            alarms.push(alarm_json(&info.id, v));
        }
        info.in_episode = sc.is_anomaly;
    }
    info.rows += results.len() as u64;
    info.alarms += alarms.len() as u64;
    if let Some(last) = results.iter().rev().find(|x| x.is_anomaly) {
        info.last_alarm_row = Some(last.row);
    }
    if let Some(ts) = &ts {
        info.last_timestamp = ts.last().cloned();
    }
    let stored: Vec<(u64, Vec<u8>)> =
        results.iter().zip(&out).map(|(sc, v)| (sc.row, serde_json::to_vec(v).unwrap_or_default())).collect();
    let raw: Vec<(u64, Vec<f32>)> = results.iter().zip(rows).map(|(sc, row)| (sc.row, row)).collect();
    let alarm_bytes: Vec<Vec<u8>> = alarms.iter().map(|a| a.to_string().into_bytes()).collect();
    commit(s, ent, mon, info, Written { results: stored, rows: raw, alarms: alarm_bytes }, &events, false)?;
    s.metrics.rows.fetch_add(results.len() as u64, Ordering::Relaxed);
    s.metrics.anomalous_rows.fetch_add(anomalous, Ordering::Relaxed);
    s.metrics.alarms.fetch_add(alarms.len() as u64, Ordering::Relaxed);
    count_events(s, &events);
    s.hub.publish(&alarms);
    Ok(out)
}

/// Counts the monitor's decisions in the metrics.
fn count_events(s: &Service, events: &[lara_stream::Event]) {
    for e in events {
        match e.kind.as_str() {
            "adapt" | "reselect" => s.metrics.adaptations.fetch_add(1, Ordering::Relaxed),
            "rollback" => s.metrics.rollbacks.fetch_add(1, Ordering::Relaxed),
            _ => 0,
        };
    }
}

/// What an ingest writes besides the snapshot and events.
#[derive(Default)]
pub(crate) struct Written {
    pub results: Vec<(u64, Vec<u8>)>,
    pub rows: Vec<(u64, Vec<f32>)>,
    pub alarms: Vec<Vec<u8>>,
}

/// Stores the entity's description, `results`, rows and `events` in one transaction, with a
/// new snapshot of the monitor when `force_snapshot` or when `snapshot_every` rows have passed
/// since the stored one (a restart restores that snapshot and replays the stored rows after
/// it: the monitor is deterministic, so the state is the same). Then swaps the new monitor in
/// (nothing changes when the store fails).
pub(crate) fn commit(
    s: &Service,
    ent: &mut Entity,
    mon: Monitor,
    mut info: EntityInfo,
    written: Written,
    events: &[lara_stream::Event],
    force_snapshot: bool,
) -> Result<(), Answer> {
    let snapshot = if force_snapshot || mon.rows_seen() >= info.snapshot_row + s.snapshot_every {
        info.snapshot_row = mon.rows_seen();
        Some(mon.snapshot().map_err(|e| bad(500, e.to_string()))?)
    } else {
        None
    };
    // Retention: never below the snapshot, whose later rows a restart replays.
    let mut prune = None;
    if s.retain_rows > 0 {
        let cutoff = info.rows.saturating_sub(s.retain_rows).min(info.snapshot_row);
        if cutoff > info.pruned_below {
            prune = Some((info.pruned_below, cutoff));
            info.pruned_below = cutoff;
        }
    }
    let first = info.events;
    info.events += events.len() as u64;
    let write = IngestWrite {
        prune,
        entity: info.id.clone(),
        meta: serde_json::to_vec(&info).unwrap_or_default(),
        snapshot,
        results: written.results,
        rows: written.rows,
        alarms: written.alarms,
        events: events
            .iter()
            .enumerate()
            .map(|(k, e)| (first + k as u64, serde_json::to_vec(e).unwrap_or_default()))
            .collect(),
    };
    s.store.ingest(write).map_err(|e| bad(500, format!("not stored, nothing changed: {e}")))?;
    ent.monitor = mon;
    ent.info = info;
    Ok(())
}

/// Runs an operator control on a copy of the monitor; stores its snapshot (a control is not
/// replayable from rows) and events in one transaction, then swaps it in.
pub(crate) fn control(s: &Service, id: &str, f: fn(&mut Monitor) -> Result<(), lara_stream::StreamError>) -> Answer {
    let Some(shared) = entity(s, id) else { return bad(404, format!("no entity {id:?}")) };
    let mut guard = shared.lock().expect("entity lock");
    let ent = &mut *guard;
    let mut mon = ent.monitor.clone();
    if let Err(e) = f(&mut mon) {
        return bad(409, e.to_string());
    }
    let events = mon.drain_events();
    let info = ent.info.clone();
    if let Err(a) = commit(s, ent, mon, info, Written::default(), &events, true) {
        return a;
    }
    count_events(s, &events);
    ok_json(200, &json!({ "entity": entity_json(ent), "events": events }))
}

pub(crate) fn post_adapt(s: &Arc<Service>, r: &mut Req) -> Answer {
    control(s, &r.params[0].clone(), Monitor::adapt_now)
}

pub(crate) fn post_rollback(s: &Arc<Service>, r: &mut Req) -> Answer {
    control(s, &r.params[0].clone(), Monitor::rollback)
}

pub(crate) fn get_versions(s: &Arc<Service>, r: &mut Req) -> Answer {
    let Some(shared) = entity(s, &r.params[0]) else { return bad(404, format!("no entity {:?}", r.params[0])) };
    let e = shared.lock().expect("entity lock");
    let versions: Vec<Value> = e
        .monitor
        .current()
        .into_iter()
        .chain(e.monitor.memory())
        .map(|p| {
            json!({
                "pattern": p.id,
                "adapted": p.adaptation.is_some(),
                "fitted_rows": p.fitted_rows,
                "adapter_bytes": p.adaptation.as_ref().map(|a| a.adapter.param_bytes()),
            })
        })
        .collect();
    ok_json(
        200,
        &json!({ "current": e.monitor.current().map(|p| p.id), "model_version": e.monitor.version(), "versions": versions }),
    )
}

pub(crate) fn scored_json(sc: &Scored, ts: Option<&str>) -> Value {
    let mut v = json!(sc);
    if let Some(t) = ts {
        v["timestamp"] = json!(t);
    }
    v
}

pub(crate) fn stored(s: &Service, r: &Req, only_alarms: bool) -> Result<Vec<Value>, Answer> {
    let id = &r.params[0];
    if entity(s, id).is_none() {
        return Err(bad(404, format!("no entity {id:?}")));
    }
    let from: u64 = r.q_num("from")?.unwrap_or(0);
    let to: u64 = r.q_num("to")?.unwrap_or(u64::MAX);
    let limit: usize = r.q_num("limit")?.unwrap_or(100_000).min(1_000_000);
    let with_values = match r.q("values").unwrap_or("false") {
        "true" | "1" => true,
        "false" | "0" => false,
        v => return Err(bad(400, format!("query parameter values={v:?}: expected true or false"))),
    };
    let raw = s
        .store
        .results(id, from, to, if only_alarms { usize::MAX } else { limit })
        .map_err(|e| bad(500, e.to_string()))?;
    let mut out = Vec::new();
    for b in raw {
        let v: Value = serde_json::from_slice(&b).map_err(|e| bad(500, e.to_string()))?;
        if !only_alarms || v["is_anomaly"].as_bool() == Some(true) {
            out.push(v);
            if out.len() >= limit {
                break;
            }
        }
    }
    if with_values {
        let rows: Vec<u64> = out.iter().map(|v| v["row"].as_u64().unwrap_or_default()).collect();
        let vals = s.store.rows_at(id, &rows).map_err(|e| bad(500, e.to_string()))?;
        for (v, x) in out.iter_mut().zip(vals) {
            v["values"] = json!(x);
        }
    }
    Ok(out)
}

pub(crate) fn get_scores(s: &Arc<Service>, r: &mut Req) -> Answer {
    match stored(s, r, false) {
        Ok(v) => ok_json(200, &json!({ "results": v })),
        Err(a) => a,
    }
}

pub(crate) fn get_alarms(s: &Arc<Service>, r: &mut Req) -> Answer {
    match stored(s, r, true) {
        Ok(v) => ok_json(200, &json!({ "alarms": v })),
        Err(a) => a,
    }
}

pub(crate) fn get_events(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = &r.params[0];
    if entity(s, id).is_none() {
        return bad(404, format!("no entity {id:?}"));
    }
    match s.store.events(id, 1_000_000) {
        Ok(raw) => {
            let v: Vec<Value> = raw.iter().filter_map(|b| serde_json::from_slice(b).ok()).collect();
            ok_json(200, &json!({ "events": v }))
        }
        Err(e) => bad(500, e.to_string()),
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_order_is_numeric_or_textual() {
        assert!(later("10", "9"));
        assert!(!later("9", "10"));
        assert!(later("2024-01-02T00:00:00Z", "2024-01-01T23:59:59Z"));
        assert!(!later("2024-01-01", "2024-01-01"));
    }
}
