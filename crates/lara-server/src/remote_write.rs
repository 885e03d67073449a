//! Prometheus remote-write (`POST /api/v1/write`): a snappy-compressed protobuf
//! `WriteRequest` becomes entity rows.
//!
//! Mapping (`[remote_write]` in `lara.toml`): the value of `entity_label` (default
//! `instance`) names the entity, the value of `column_label` (default `__name__`) the column.
//! A row of an entity is the set of its columns' samples with one timestamp (one scrape);
//! rows are pushed in time order once every column of the entity's model is present.
//! Prometheus shards series over parallel requests, so a scrape can arrive in pieces: partial
//! rows wait in memory (they are not acknowledged rows) and a partial row is given up, and
//! counted, once [`MAX_WAITING`] newer complete rows are waiting behind it.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use lara_stream::Policy;

use crate::api::{bad, valid_id, Answer, Req};
use crate::Service;

/// Newer complete rows after which an incomplete row is given up.
pub const MAX_WAITING: usize = 4;
/// Largest decompressed request (bytes).
pub const MAX_DECOMPRESSED: usize = 256 << 20;

/// One series of a `WriteRequest`: its labels and `(value, timestamp_ms)` samples.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TimeSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(f64, i64)>,
}

/// A malformed request.
#[derive(Debug, thiserror::Error)]
#[error("remote-write body: {0}")]
pub struct DecodeError(pub String);

fn e(msg: impl Into<String>) -> DecodeError {
    DecodeError(msg.into())
}

/// Snappy (block format) + protobuf `prometheus.WriteRequest` → its time series.
pub fn decode(body: &[u8]) -> Result<Vec<TimeSeries>, DecodeError> {
    let n = snap::raw::decompress_len(body).map_err(|x| e(format!("not snappy-compressed ({x})")))?;
    if n > MAX_DECOMPRESSED {
        return Err(e(format!("decompresses to {n} bytes, more than the limit of {MAX_DECOMPRESSED}")));
    }
    let raw = snap::raw::Decoder::new().decompress_vec(body).map_err(|x| e(format!("snappy: {x}")))?;
    decode_write_request(&raw)
}

/// A protobuf reader over one message.
struct Pb<'a> {
    b: &'a [u8],
    i: usize,
}

impl<'a> Pb<'a> {
    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = *self.b.get(self.i).ok_or_else(|| e("truncated varint"))?;
            self.i += 1;
            v |= u64::from(byte & 0x7f) << shift;
            if byte & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err(e("varint longer than 10 bytes"))
    }
    fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.i.checked_add(n).filter(|&end| end <= self.b.len()).ok_or_else(|| e("truncated field"))?;
        let s = &self.b[self.i..end];
        self.i = end;
        Ok(s)
    }
    /// The next field: number, wire type, and for wire type 2 its bytes, for 1 its 8 bytes.
    fn field(&mut self) -> Result<Option<(u64, Field<'a>)>, DecodeError> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let f = match key & 7 {
            0 => Field::Varint(self.varint()?),
            1 => Field::Fixed64(u64::from_le_bytes(self.bytes(8)?.try_into().expect("8 bytes"))),
            2 => {
                let n = usize::try_from(self.varint()?).map_err(|_| e("length too large"))?;
                Field::Bytes(self.bytes(n)?)
            }
            5 => Field::Fixed32(self.bytes(4)?),
            w => return Err(e(format!("unsupported wire type {w}"))),
        };
        Ok(Some((key >> 3, f)))
    }
}

enum Field<'a> {
    Varint(u64),
    Fixed64(u64),
    Bytes(&'a [u8]),
    #[allow(dead_code)]
    Fixed32(&'a [u8]),
}

fn text(b: &[u8], what: &str) -> Result<String, DecodeError> {
    String::from_utf8(b.to_vec()).map_err(|_| e(format!("{what} is not UTF-8")))
}

/// Protobuf `WriteRequest { repeated TimeSeries timeseries = 1; … }` (other fields skipped).
pub fn decode_write_request(b: &[u8]) -> Result<Vec<TimeSeries>, DecodeError> {
    let mut out = Vec::new();
    let mut pb = Pb { b, i: 0 };
    while let Some((num, f)) = pb.field()? {
        if let (1, Field::Bytes(ts)) = (num, f) {
            out.push(decode_series(ts)?);
        }
    }
    Ok(out)
}

fn decode_series(b: &[u8]) -> Result<TimeSeries, DecodeError> {
    let mut ts = TimeSeries::default();
    let mut pb = Pb { b, i: 0 };
    while let Some((num, f)) = pb.field()? {
        match (num, f) {
            (1, Field::Bytes(l)) => {
                let (mut name, mut value) = (String::new(), String::new());
                let mut lp = Pb { b: l, i: 0 };
                while let Some((n, f)) = lp.field()? {
                    match (n, f) {
                        (1, Field::Bytes(x)) => name = text(x, "label name")?,
                        (2, Field::Bytes(x)) => value = text(x, "label value")?,
                        _ => {}
                    }
                }
                ts.labels.push((name, value));
            }
            (2, Field::Bytes(s)) => {
                let (mut v, mut t) = (0.0, 0i64);
                let mut sp = Pb { b: s, i: 0 };
                while let Some((n, f)) = sp.field()? {
                    match (n, f) {
                        (1, Field::Fixed64(x)) => v = f64::from_bits(x),
                        (2, Field::Varint(x)) => t = x as i64,
                        _ => {}
                    }
                }
                ts.samples.push((v, t));
            }
            _ => {}
        }
    }
    Ok(ts)
}

/// Samples grouped as `entity → timestamp_ms → column → value`; series without the entity or
/// column label are counted in `unlabelled`.
#[derive(Debug, Default)]
pub struct Grouped {
    pub entities: BTreeMap<String, BTreeMap<i64, HashMap<String, f64>>>,
    pub unlabelled: usize,
}

pub fn group(series: &[TimeSeries], entity_label: &str, column_label: &str) -> Grouped {
    let mut g = Grouped::default();
    for s in series {
        let get = |k: &str| s.labels.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let (Some(ent), Some(col)) = (get(entity_label), get(column_label)) else {
            g.unlabelled += s.samples.len();
            continue;
        };
        let rows = g.entities.entry(ent).or_default();
        for &(v, t) in &s.samples {
            rows.entry(t).or_default().insert(col.clone(), v);
        }
    }
    g
}

/// Partial rows of one entity waiting for their missing columns.
#[derive(Debug, Default, Clone)]
pub struct Pending {
    rows: BTreeMap<i64, HashMap<String, f64>>,
}

/// Rows ready to push: values in the model's column order, their timestamps (ms), and how
/// many partial rows were given up.
#[derive(Debug, Default, PartialEq)]
pub struct Ready {
    pub rows: Vec<Vec<f32>>,
    pub timestamps: Vec<i64>,
    pub given_up: usize,
    /// Samples at or before the entity's last pushed timestamp (late or duplicate).
    pub late: usize,
    /// NaN or infinite samples (Prometheus writes a NaN as the staleness marker).
    pub non_finite: usize,
}

impl Pending {
    /// Adds `samples` (timestamp → column → value), drops samples not after `last_ts`, and
    /// takes the complete rows that are ready, oldest first (see the module docs).
    pub fn add(
        &mut self,
        samples: BTreeMap<i64, HashMap<String, f64>>,
        columns: &[String],
        last_ts: Option<i64>,
    ) -> Ready {
        let mut ready = Ready::default();
        for (t, cols) in samples {
            if last_ts.is_some_and(|l| t <= l) {
                ready.late += cols.len();
                continue;
            }
            let row = self.rows.entry(t).or_default();
            for (c, v) in cols {
                if !v.is_finite() {
                    ready.non_finite += 1;
                } else if columns.contains(&c) {
                    row.insert(c, v);
                }
            }
            if row.is_empty() {
                self.rows.remove(&t);
            }
        }
        let complete = |r: &HashMap<String, f64>| columns.iter().all(|c| r.contains_key(c));
        while let Some((&t, first)) = self.rows.iter().next() {
            if complete(first) {
                let r = self.rows.remove(&t).expect("present");
                ready.rows.push(columns.iter().map(|c| r[c] as f32).collect());
                ready.timestamps.push(t);
            } else if self.rows.values().skip(1).filter(|r| complete(r)).count() >= MAX_WAITING {
                self.rows.remove(&t);
                ready.given_up += 1;
            } else {
                break;
            }
        }
        ready
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

// ----------------------------------------------------------------------------------
// The route

/// `POST /api/v1/write`: decodes, groups per entity, creates unknown entities on the
/// configured base, and ingests every entity's ready rows (timestamps in ms). Answers 204;
/// 400 for a malformed body (Prometheus does not retry it), 5xx when the store fails
/// (Prometheus retries).
pub(crate) fn post_write(s: &Arc<Service>, r: &mut Req) -> Answer {
    let series = match decode(&r.body) {
        Ok(x) => x,
        Err(e) => return bad(400, e.to_string()),
    };
    let cfg = &s.remote_write;
    let g = group(&series, &cfg.entity_label, &cfg.column_label);
    let total: usize = series.iter().map(|x| x.samples.len()).sum();
    s.metrics.remote_write_samples.fetch_add(total as u64, Ordering::Relaxed);
    let mut dropped = g.unlabelled;
    for (name, samples) in g.entities {
        let shared = match crate::entities::entity(s, &name) {
            Some(e) => e,
            None => match (&cfg.create_on_base, valid_id(&name)) {
                (Some(base), Ok(())) => {
                    match crate::entities::create_entity(s, &name, base, true, Policy::Adapt, 40) {
                        Ok(e) => e,
                        // Created meanwhile by another request.
                        Err(a) if a.status == 409 => match crate::entities::entity(s, &name) {
                            Some(e) => e,
                            None => return a,
                        },
                        Err(a) => return a,
                    }
                }
                _ => {
                    dropped += samples.values().map(|c| c.len()).sum::<usize>();
                    continue;
                }
            },
        };
        let mut guard = shared.lock().expect("entity lock");
        let ent = &mut *guard;
        let columns = ent.monitor.columns().to_vec();
        let last: Option<i64> = ent.info.last_timestamp.as_deref().and_then(|t| t.parse().ok());
        let known: usize = samples.values().map(|c| c.keys().filter(|k| columns.contains(k)).count()).sum();
        dropped += samples.values().map(|c| c.len()).sum::<usize>() - known;
        let ready = {
            let mut pending = s.pending.lock().expect("pending lock");
            pending.entry(name.clone()).or_default().add(samples, &columns, last)
        };
        dropped += ready.late + ready.non_finite + ready.given_up * columns.len();
        if ready.rows.is_empty() {
            continue;
        }
        let ts: Vec<String> = ready.timestamps.iter().map(|t| t.to_string()).collect();
        if let Err(a) = crate::entities::ingest(s, ent, ready.rows, Some(ts)) {
            // Rows the store refused are not acknowledged: Prometheus retries on 5xx.
            return a;
        }
    }
    s.metrics.remote_write_dropped.fetch_add(dropped as u64, Ordering::Relaxed);
    Answer { status: 204, content_type: "text/plain", body: Vec::new() }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Protobuf encoder for tests (the inverse of the decoder).
    pub fn encode(series: &[TimeSeries]) -> Vec<u8> {
        fn varint(out: &mut Vec<u8>, mut v: u64) {
            while v >= 0x80 {
                out.push((v as u8) | 0x80);
                v >>= 7;
            }
            out.push(v as u8);
        }
        fn bytes(out: &mut Vec<u8>, num: u64, b: &[u8]) {
            varint(out, (num << 3) | 2);
            varint(out, b.len() as u64);
            out.extend_from_slice(b);
        }
        let mut req = Vec::new();
        for s in series {
            let mut ts = Vec::new();
            for (n, v) in &s.labels {
                let mut l = Vec::new();
                bytes(&mut l, 1, n.as_bytes());
                bytes(&mut l, 2, v.as_bytes());
                bytes(&mut ts, 1, &l);
            }
            for &(v, t) in &s.samples {
                let mut x = Vec::new();
                varint(&mut x, (1 << 3) | 1);
                x.extend_from_slice(&v.to_bits().to_le_bytes());
                varint(&mut x, 2 << 3);
                varint(&mut x, t as u64);
                bytes(&mut ts, 2, &x);
            }
            bytes(&mut req, 1, &ts);
        }
        // An unknown field (metadata = 3) the decoder must skip.
        bytes(&mut req, 3, b"\x08\x01");
        req
    }

    pub fn series(name: &str, instance: &str, samples: &[(f64, i64)]) -> TimeSeries {
        TimeSeries {
            labels: vec![("__name__".into(), name.into()), ("instance".into(), instance.into())],
            samples: samples.to_vec(),
        }
    }

    #[test]
    fn a_snappy_protobuf_request_round_trips() {
        let s = vec![series("cpu", "a:9100", &[(0.5, 1000), (-2.25, 2000)]), series("mem", "a:9100", &[(7.0, 1000)])];
        let body = snap::raw::Encoder::new().compress_vec(&encode(&s)).unwrap();
        assert_eq!(decode(&body).unwrap(), s);
    }

    #[test]
    fn malformed_bodies_are_errors_not_panics() {
        assert!(decode(b"not snappy at all").is_err());
        let full = encode(&[series("cpu", "a", &[(1.0, 5)])]);
        for cut in 1..full.len() - 4 {
            // Every truncation is either an error or a shorter valid message; never a panic.
            let _ = decode_write_request(&full[..cut]);
        }
        assert!(decode_write_request(&[0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f]).is_err());
        assert!(decode_write_request(&[0x0b]).is_err(), "wire type 3 is refused");
    }

    #[test]
    fn rows_are_assembled_per_timestamp_in_column_order() {
        let cols = vec!["mem".to_string(), "cpu".to_string()];
        let g = group(
            &[
                series("cpu", "a", &[(1.0, 10), (2.0, 20)]),
                series("mem", "a", &[(5.0, 10)]),
                series("cpu", "b", &[(9.0, 10)]),
                TimeSeries { labels: vec![("__name__".into(), "x".into())], samples: vec![(1.0, 1)] },
            ],
            "instance",
            "__name__",
        );
        assert_eq!(g.unlabelled, 1);
        let mut p = Pending::default();
        let r = p.add(g.entities["a"].clone(), &cols, None);
        assert_eq!(r.rows, vec![vec![5.0, 1.0]]);
        assert_eq!(r.timestamps, vec![10]);
        // Row 20 waits for mem; it arrives in the next request, with a late sample.
        let g2 = group(&[series("mem", "a", &[(6.0, 20), (4.0, 10)])], "instance", "__name__");
        let r = p.add(g2.entities["a"].clone(), &cols, Some(10));
        assert_eq!((r.rows, r.timestamps, r.late), (vec![vec![6.0, 2.0]], vec![20], 1));
        assert!(p.is_empty());
        // A staleness marker (NaN) is dropped, not pushed.
        let g3 = group(&[series("cpu", "a", &[(f64::NAN, 30)]), series("mem", "a", &[(1.0, 30)])], "instance", "__name__");
        let r = p.add(g3.entities["a"].clone(), &cols, Some(20));
        assert_eq!((r.rows.len(), r.non_finite), (0, 1));
    }

    #[test]
    fn a_partial_row_is_given_up_behind_enough_complete_ones() {
        let cols = vec!["cpu".to_string(), "mem".to_string()];
        let mut p = Pending::default();
        let mut g = BTreeMap::new();
        g.insert(1, HashMap::from([("cpu".to_string(), 1.0)]));
        for t in 2..2 + MAX_WAITING as i64 - 1 {
            g.insert(t, HashMap::from([("cpu".to_string(), 1.0), ("mem".to_string(), 2.0)]));
        }
        let r = p.add(g, &cols, None);
        assert!(r.rows.is_empty(), "row 1 may still complete");
        let mut g = BTreeMap::new();
        g.insert(99, HashMap::from([("cpu".to_string(), 3.0), ("mem".to_string(), 4.0)]));
        let r = p.add(g, &cols, None);
        assert_eq!(r.given_up, 1);
        assert_eq!(r.rows.len(), MAX_WAITING);
        assert_eq!(r.timestamps.first(), Some(&2));
    }
}
