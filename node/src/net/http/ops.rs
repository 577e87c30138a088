//! For machines: `/metrics` (Prometheus text), `/healthz`, `/readyz`, and
//! the API's OpenAPI description.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{AppState, HttpError, api};
use crate::api::{Inspection, MAX_PAGE, Query};
use crate::monitor::{MAX_QUEUE_LABELS, Monitor, Snapshot};

/// `GET /healthz`: 200 while the process serves HTTP.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(json!({ "status": "ok" }))
}

/// `GET /readyz`: 200 when the node takes jobs (engine answering, executor
/// up, job store writing, not stopping); 503 with the reason otherwise.
pub async fn readyz(State(st): State<AppState>) -> Response {
    let not_ready = |reason: String| {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "ready": false, "reason": reason })),
        )
            .into_response()
    };
    if st.stopping() {
        return not_ready("the node is stopping".into());
    }
    if st.handle().exec_stats().threads == 0 {
        return not_ready("the executor has no threads".into());
    }
    if let Some(why) = st.handle().store_broken() {
        return not_ready(format!("the job store cannot write: {why}"));
    }
    match api::stats(&st).await {
        Ok(_) => Json(json!({ "ready": true })).into_response(),
        Err(e) => not_ready(format!("the engine is not answering: {}", e.message)),
    }
}

/// `GET /metrics`: the node's registry in Prometheus text format.
pub async fn metrics(State(st): State<AppState>) -> Result<Response, HttpError> {
    let _one_at_a_time = st.inner.scrape.lock().await;
    let stats = api::stats(&st).await?;
    let Inspection::Queues(page) = st
        .ask(Query::Queues {
            cursor: None,
            limit: MAX_PAGE,
            prefix: None,
        })
        .await?
    else {
        return Err(HttpError::internal("unexpected answer from the engine"));
    };
    let mut depths: Vec<(String, u64)> = page
        .queues
        .iter()
        .map(|q| (q.name.clone(), q.depth()))
        .collect();
    depths.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    depths.truncate(MAX_QUEUE_LABELS);
    // The registry bounds the per-tenant series: a removed tenant's vanish.
    let registry = st.handle().auth().tenants().list();
    let names = registry.iter().map(|t| t.name.clone()).collect();
    let Inspection::Tenants(figures) = st.ask(Query::Tenants { names }).await? else {
        return Err(HttpError::internal("unexpected answer from the engine"));
    };
    let registered = st.handle().auth().tenants();
    let tenants = figures
        .into_iter()
        .zip(registry.iter().map(|t| t.module_bytes))
        .map(|(mut t, bytes)| {
            let uploads = registered.uploads_refused(&t.name);
            if uploads > 0 {
                t.refused.push(("max-module-bytes", uploads));
            }
            (t, bytes)
        })
        .collect();
    let m = st.monitor();
    m.metrics().set_snapshot(Snapshot {
        stats,
        exec: st.handle().exec_stats(),
        queue_depths: depths,
        tenants,
        uptime_secs: st.inner.started.elapsed().as_secs(),
    });
    let text = m
        .encode()
        .map_err(|_| HttpError::internal("encoding the metrics failed"))?;
    Ok(([(header::CONTENT_TYPE, Monitor::CONTENT_TYPE)], text).into_response())
}

/// `GET /api/openapi.json`.
pub async fn openapi() -> Response {
    ([(header::CONTENT_TYPE, "application/json")], super::OPENAPI).into_response()
}
