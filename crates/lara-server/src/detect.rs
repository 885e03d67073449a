//! `POST /v1/detect?model=id`: a whole CSV scored by a model, stateless — what `lara detect`
//! does (look-ahead window scores by default, `causal=true` for the online monitor's causal
//! score of a static model).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::{bad, ok_json, Answer, Req};
use crate::Service;

pub(crate) fn post_detect(s: &Arc<Service>, r: &mut Req) -> Answer {
    let run = || -> Result<Answer, Answer> {
        let id = r.q("model").ok_or_else(|| bad(400, "query parameter model is required"))?;
        let det = match s.models.lock().expect("models lock").get(id) {
            Some(m) => m.det.clone(),
            None => return Err(bad(404, format!("no model {id:?}"))),
        };
        let causal = match r.q("causal").unwrap_or("false") {
            "true" | "1" => true,
            "false" | "0" => false,
            v => return Err(bad(400, format!("query parameter causal={v:?}: expected true or false"))),
        };
        let csv = match r.q("format").unwrap_or("json") {
            "json" => false,
            "csv" => true,
            v => return Err(bad(400, format!("query parameter format={v:?}: expected json or csv"))),
        };
        let opts = lara_core::CsvOptions { columns: Some(det.meta.columns.clone()), ..Default::default() };
        let series =
            lara_core::read_csv_bytes("request body", &r.body, &opts).map_err(|e| bad(400, e.to_string()))?;
        if series.n_rows == 0 {
            return Err(bad(400, "request body: no rows"));
        }
        if series.values.iter().any(|v| !v.is_finite()) {
            return Err(bad(400, "request body: values must be finite numbers"));
        }
        let d = if causal { det.detect_causal(&series) } else { det.detect(&series, None) }
            .map_err(|e| bad(422, e.to_string()))?;
        let name = |t: usize| -> Vec<&str> { d.top_dims[t].iter().map(|&j| series.columns[j].as_str()).collect() };
        if csv {
            let mut out = String::from(if series.timestamps.is_some() { "timestamp" } else { "row" });
            out.push_str(",score,threshold,is_anomaly,top_dims\n");
            for t in 0..series.n_rows {
                let key = series.timestamps.as_ref().map(|ts| ts[t].clone()).unwrap_or_else(|| t.to_string());
                out.push_str(&format!(
                    "{key},{},{},{},{}\n",
                    d.score[t],
                    d.threshold,
                    u8::from(d.is_anomaly[t]),
                    name(t).join(";")
                ));
            }
            return Ok(Answer { status: 200, content_type: "text/csv", body: out.into_bytes() });
        }
        let results: Vec<Value> = (0..series.n_rows)
            .map(|t| {
                let mut v = json!({ "row": t, "score": d.score[t], "is_anomaly": d.is_anomaly[t], "top_dims": name(t) });
                if let Some(ts) = &series.timestamps {
                    v["timestamp"] = json!(ts[t]);
                }
                v
            })
            .collect();
        Ok(ok_json(200, &json!({ "model": id, "causal": causal, "threshold": d.threshold, "results": results })))
    };
    run().unwrap_or_else(|a| a)
}
