//! The JSON documents of the API (their schemas are in `openapi.json`).

use serde_json::{Value, json};

use super::AppState;
use crate::api::{JobSummary, ModuleInfo, NodeStats, QueueStat};
use crate::job::UnixMs;
use crate::monitor::{Failure, Rate, Second};

/// Rates as `{added_per_sec, finished_per_sec, failed_per_sec, window_secs}`.
pub fn rate(r: Rate) -> Value {
    json!({
        "added_per_sec": r.added,
        "finished_per_sec": r.finished,
        "failed_per_sec": r.failed,
        "window_secs": crate::monitor::RATE_WINDOW_SECS,
    })
}

/// This node, as `/api/cluster` lists it and `/api/nodes/{id}` shows it.
/// A cluster adds its peers with `"self": false` and the state it sees.
pub fn node(st: &AppState, stats: &NodeStats, now: UnixMs) -> Value {
    let x = st.handle().exec_stats();
    let slots = u64::from(x.threads).max(1);
    json!({
        "id": stats.node_id,
        "self": true,
        "state": if st.stopping() { "leaving" } else { "up" },
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_secs": st.inner.started.elapsed().as_secs(),
        "last_seen": now,
        "addresses": {
            "quic": st.inner.quic_addr.to_string(),
            "http": st.inner.http_addr.to_string(),
        },
        "load": x.busy as f64 / slots as f64,
        "executor": {
            "slots": x.threads,
            "busy": x.busy,
            "jobs_run": x.jobs_run,
            "modules_compiled": x.modules_compiled,
            "modules_loaded": x.modules_loaded,
            "pagemap_scan": x.pagemap_scan,
        },
        "jobs": {
            "held": stats.jobs,
            "ready": stats.ready,
            "running": stats.running,
            "waiters": stats.waiters,
        },
        "queues": stats.queues,
        "modules": stats.modules,
        "rates": rate(st.monitor().node_rate(now)),
    })
}

pub fn queue(st: &AppState, q: &QueueStat, now: UnixMs) -> Value {
    json!({
        "name": q.name,
        "depth": q.depth(),
        "ready_wasm": q.ready_wasm,
        "ready_plain": q.ready_plain,
        "oldest": q.oldest.map(|(id, waiting_ms)| json!({
            "id": id.to_string(),
            "waiting_ms": waiting_ms,
        })),
        "paused": q.pause != "none",
        "pause": q.pause,
        "blocked_clients": q.blocked,
        "jobs_in": q.jobs_in,
        "jobs_out": q.jobs_out,
        "created_at": q.created_at / 1000,
        "idle_ms": q.idle_ms,
        "rates": rate(st.monitor().queue_rate(now, &q.name)),
    })
}

pub fn job_summary(j: &JobSummary) -> Value {
    json!({
        "id": j.id.to_string(),
        "queue": j.queue,
        "state": j.state.as_str(),
        "priority": j.priority,
        "attempts": j.attempts,
        "module": j.module.map(|m| m.to_hex()),
        "registered_at": j.registered_at,
        "body_bytes": j.body_bytes,
        "error_class": j.error_class.map(|c| c.to_string()),
    })
}

pub fn module(m: &ModuleInfo) -> Value {
    json!({ "hash": m.hash.to_hex(), "size": m.size, "jobs": m.jobs })
}

pub fn second(s: &Second) -> Value {
    json!({ "at": s.sec, "added": s.added, "finished": s.finished, "failed": s.failed })
}

pub fn failure(f: &Failure) -> Value {
    json!({
        "at": f.at,
        "id": f.id,
        "queue": f.queue,
        "class": f.class,
        "run_ms": f.run_us as f64 / 1000.0,
    })
}
