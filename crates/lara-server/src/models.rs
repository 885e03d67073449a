//! Models: upload, download, training jobs (from a CSV body or an entity's stored rows).

use std::sync::Arc;

use lara_core::Series;
use lara_stream::model_fingerprint;
use lara_vae::{Detector, FitOptions};
use serde_json::json;

use crate::api::{bad, ok_json, valid_id, Answer, Req};
use crate::{Job, LoadedModel, ModelInfo, Service};

/// The description of a model.
pub fn model_info(id: &str, det: &Detector, bytes: &[u8]) -> ModelInfo {
    ModelInfo {
        id: id.to_string(),
        columns: det.meta.columns.clone(),
        window: det.meta.options.window,
        train_rows: det.meta.train_rows,
        bytes: bytes.len(),
        // The fingerprint entity snapshots record for their shared base model.
        sha256: model_fingerprint(det).unwrap_or_default(),
        adapted: det.meta.adaptation.is_some(),
    }
}

pub(crate) fn list_models(s: &Arc<Service>, _: &mut Req) -> Answer {
    let models = s.models.lock().expect("models lock");
    let mut v: Vec<&ModelInfo> = models.values().map(|m| &m.info).collect();
    v.sort_by(|a, b| a.id.cmp(&b.id));
    ok_json(200, &json!({ "models": v }))
}

pub(crate) fn get_model(s: &Arc<Service>, r: &mut Req) -> Answer {
    match s.models.lock().expect("models lock").get(&r.params[0]) {
        Some(m) => ok_json(200, &json!(m.info)),
        None => bad(404, format!("no model {:?}", r.params[0])),
    }
}

pub(crate) fn get_model_file(s: &Arc<Service>, r: &mut Req) -> Answer {
    match s.store.model(&r.params[0]) {
        Ok(Some(b)) => Answer { status: 200, content_type: "application/octet-stream", body: b },
        Ok(None) => bad(404, format!("no model {:?}", r.params[0])),
        Err(e) => bad(500, e.to_string()),
    }
}

pub(crate) fn install_model(s: &Service, id: &str, det: Detector, bytes: &[u8]) -> Answer {
    let info = model_info(id, &det, bytes);
    let meta = serde_json::to_vec(&info).unwrap_or_default();
    if let Err(e) = s.store.put_model(id, bytes, &meta) {
        return bad(500, e.to_string());
    }
    s.models
        .lock()
        .expect("models lock")
        .insert(id.to_string(), LoadedModel { det: Arc::new(det), info: info.clone() });
    ok_json(200, &json!(info))
}

pub(crate) fn put_model_file(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = r.params[0].clone();
    if s.models.lock().expect("models lock").contains_key(&id) {
        return bad(409, format!("model {id:?} exists; delete it first (entities keep their model)"));
    }
    let det = match Detector::from_bytes(std::path::Path::new(&id), &r.body) {
        Ok(d) => d,
        Err(e) => return bad(422, format!("not a usable .lara file: {e}")),
    };
    if det.meta.online.is_none() {
        return bad(422, "the model has no online calibration (trained by an older lara); retrain it");
    }
    let body = std::mem::take(&mut r.body);
    install_model(s, &id, det, &body)
}

pub(crate) fn delete_model(s: &Arc<Service>, r: &mut Req) -> Answer {
    let id = &r.params[0];
    let user = s.entities.read().expect("entities lock").values().find_map(|e| {
        let e = e.lock().expect("entity lock");
        (&e.info.model == id).then(|| e.info.id.clone())
    });
    if let Some(u) = user {
        return bad(409, format!("model {id:?} is used by entity {u:?}"));
    }
    if s.models.lock().expect("models lock").remove(id).is_none() {
        return bad(404, format!("no model {id:?}"));
    }
    match s.store.delete_model(id) {
        Ok(()) => Answer { status: 204, content_type: "application/json", body: Vec::new() },
        Err(e) => bad(500, e.to_string()),
    }
}

/// Checks a new model id (`name`), free to use.
fn new_model_id(s: &Service, name: Option<&str>) -> Result<String, Answer> {
    match name {
        Some(n) => {
            valid_id(n)?;
            if s.models.lock().expect("models lock").contains_key(n) {
                return Err(bad(409, format!("model {n:?} exists")));
            }
            Ok(n.to_string())
        }
        None => Ok(s.fresh_id("model")),
    }
}

/// The training options of a request (query: window, seed).
fn fit_options(r: &Req) -> Result<FitOptions, Answer> {
    let mut fit = FitOptions::default();
    if let Some(w) = r.q_num::<usize>("window")? {
        fit.window = w;
    }
    if let Some(seed) = r.q_num::<u64>("seed")? {
        fit.train.seed = seed;
    }
    Ok(fit)
}

/// `POST /v1/models?name=&train_end=&window=&seed=` with a CSV body.
pub(crate) fn train_model(s: &Arc<Service>, r: &mut Req) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let model_id = new_model_id(s, r.q("name"))?;
        let opts = lara_core::CsvOptions { train_end: r.q_num("train_end")?, ..Default::default() };
        let series = lara_core::read_csv_bytes("request body", &r.body, &opts).map_err(|e| bad(400, e.to_string()))?;
        Ok(start_training(s, series, fit_options(r)?, model_id))
    };
    run().unwrap_or_else(|a| a)
}

/// `POST /v1/models/{id}/train?entity=&from=&to=&train_end=&window=&seed=`: model `{id}` from
/// the rows stored for an entity (rows `[from, to]`, all by default; the first `train_end` of
/// them are the training prefix, all by default).
pub(crate) fn train_from_history(s: &Arc<Service>, r: &mut Req) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let model_id = new_model_id(s, Some(&r.params[0]))?;
        let ent = r.q("entity").ok_or_else(|| bad(400, "query parameter entity is required"))?.to_string();
        let columns = match crate::entities::entity(s, &ent) {
            Some(e) => e.lock().expect("entity lock").monitor.columns().to_vec(),
            None => return Err(bad(404, format!("no entity {ent:?}"))),
        };
        let from: u64 = r.q_num("from")?.unwrap_or(0);
        let to: u64 = r.q_num("to")?.unwrap_or(u64::MAX);
        let rows = s.store.rows(&ent, from, to, usize::MAX).map_err(|e| bad(500, e.to_string()))?;
        let n = rows.len();
        let train_end = r.q_num::<usize>("train_end")?.unwrap_or(n).min(n);
        let values: Vec<f32> = rows.into_iter().flatten().collect();
        let series = Series::new(values, n, columns, None, None, train_end)
            .map_err(|e| bad(422, format!("entity {ent:?} rows {from}..={to}: {e}")))?;
        Ok(start_training(s, series, fit_options(r)?, model_id))
    };
    run().unwrap_or_else(|a| a)
}

/// Trains on a background thread; `GET /v1/jobs/{job}` follows it. Answers `202 {job}`.
fn start_training(s: &Arc<Service>, series: Series, fit: FitOptions, model_id: String) -> Answer {
    let job_id = s.fresh_id("job");
    s.jobs.lock().expect("jobs lock").insert(
        job_id.clone(),
        Job { id: job_id.clone(), status: "running".into(), progress: 0.0, model: None, error: None },
    );
    let service = s.clone();
    let jid = job_id.clone();
    std::thread::spawn(move || {
        let mut total = 1usize;
        let mut done = 0usize;
        let result = Detector::fit(&series, &fit, &mut |p| match p {
            lara_vae::Progress::Start { epochs, steps_per_epoch, max_steps } => {
                total = (epochs * steps_per_epoch).min(if max_steps > 0 { max_steps } else { usize::MAX }).max(1);
            }
            lara_vae::Progress::Step { .. } => {
                done += 1;
                if let Some(j) = service.jobs.lock().expect("jobs lock").get_mut(&jid) {
                    j.progress = (done as f64 / total as f64).min(0.99);
                }
            }
            _ => {}
        });
        let outcome = result.map_err(|e| e.to_string()).and_then(|det| {
            let bytes = det.to_bytes().map_err(|e| e.to_string())?;
            let a = install_model(&service, &model_id, det, &bytes);
            if a.status == 200 {
                Ok(())
            } else {
                Err(String::from_utf8_lossy(&a.body).into_owned())
            }
        });
        if let Some(j) = service.jobs.lock().expect("jobs lock").get_mut(&jid) {
            match outcome {
                Ok(()) => {
                    j.status = "done".into();
                    j.progress = 1.0;
                    j.model = Some(model_id);
                }
                Err(e) => {
                    j.status = "failed".into();
                    j.error = Some(e);
                }
            }
        }
    });
    ok_json(202, &json!({ "job": job_id }))
}

pub(crate) fn get_job(s: &Arc<Service>, r: &mut Req) -> Answer {
    match s.jobs.lock().expect("jobs lock").get(&r.params[0]) {
        Some(j) => ok_json(200, &json!(j)),
        None => bad(404, format!("no job {:?}", r.params[0])),
    }
}

