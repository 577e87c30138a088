//! The JSON documents of the API (their schemas are in `openapi.json`).

use serde_json::{Value, json};

use super::AppState;
use crate::api::{JobSummary, ModuleInfo, NodeStats, QueueStat};
use crate::cluster::PeerView;
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
/// Its peers are rendered by [`peer`], with `"self": false`.
pub fn node(st: &AppState, stats: &NodeStats, now: UnixMs) -> Value {
    let x = st.handle().exec_stats();
    let slots = u64::from(x.threads).max(1);
    let cluster = st.handle().cluster();
    json!({
        "id": stats.node_id,
        "self": true,
        "state": if st.stopping() || cluster.leaving() { "leaving" } else { "up" },
        "version": wasque_sdk::VERSION,
        "uptime_secs": st.inner.started.elapsed().as_secs(),
        "last_seen": now,
        "advert_age_ms": 0,
        "addresses": {
            "quic": st.inner.quic_addr.to_string(),
            "resp": cluster.resp_addr().map(|a| a.to_string()),
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

/// A member's state as this node's membership sees it.
pub fn peer_state(p: &PeerView) -> &'static str {
    match (p.up, p.suspect, p.leaving) {
        (false, _, _) => "down",
        (true, true, _) => "suspect",
        (true, false, true) => "leaving",
        (true, false, false) => "up",
    }
}

/// A peer, as `/api/cluster` lists it and `/api/nodes/{id}` shows it: the
/// state this node's membership (SWIM) sees, and what the peer's last
/// capacity advert said (`null` before the first one arrives). A peer's
/// figures are a second old at most while it is up; a down peer's are
/// its last, `advert_age_ms` old. Rates and uptime are not advertised.
pub fn peer(p: &PeerView, now: UnixMs) -> Value {
    let a = p.advert.as_ref();
    json!({
        "id": p.node.to_string(),
        "self": false,
        "state": peer_state(p),
        "version": a.map(|a| a.version.as_str()).filter(|v| !v.is_empty()),
        "uptime_secs": null,
        "last_seen": p.advert_age_ms.map(|age| now.saturating_sub(age)),
        "advert_age_ms": p.advert_age_ms,
        "addresses": {
            "quic": p.addr.to_string(),
            "resp": a.and_then(|a| a.resp_addr).map(|x| x.to_string()),
            "http": a.and_then(|a| a.http_addr).map(|x| x.to_string()),
        },
        "load": a.map_or(0.0, |a| f64::from(a.exec_busy) / f64::from(a.exec_slots.max(1))),
        "executor": a.map(|a| json!({ "slots": a.exec_slots, "busy": a.exec_busy })),
        "jobs": a.map(|a| json!({ "held": a.jobs, "ready": a.queued, "running": a.running })),
        "queues": a.map(|a| a.queue_count),
        "modules": a.map(|a| a.modules),
        "rates": null,
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
    json!({
        "hash": m.hash.to_hex(),
        "size": m.size,
        "jobs": m.jobs,
        "holders": m.holders,
        "names": m.names,
    })
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
