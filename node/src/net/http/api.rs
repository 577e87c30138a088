//! The JSON API under `/api`. Each handler checks its parameters (400
//! with a JSON error when malformed), asks the engine one [`Query`] (or,
//! for the dead letters, one command), and renders the answer. Read-only
//! but for `POST /api/queues/{name}/dead/requeue`, which takes a JSON
//! body only (a cross-site form cannot send one without the browser
//! asking first).

use std::str::FromStr;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query as QueryParams, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};

use super::{AppState, HttpError, render};
use crate::api::{Command, Dlq, DlqOp, Inspection, JobQuery, MAX_PAGE, NodeStats, Query, Reply};
use crate::cluster::PeerView;
use crate::job::{JobId, JobState, NodeName, UnixMs};
use crate::runtime::now_ms;

type Params = Result<QueryParams<Vec<(String, String)>>, QueryRejection>;

/// Seconds of throughput history `/api/activity` returns.
const ACTIVITY_SECS: u64 = 120;

/// `GET /api/cluster`: every member this node knows and totals over them.
/// `"mode"` is `"cluster"` once the node knows a peer, else `"single"`.
pub async fn cluster(State(st): State<AppState>) -> Result<Json<Value>, HttpError> {
    let stats = stats(&st).await?;
    let now = now_ms();
    let peers = st.handle().cluster().peers();
    let t = Totals::of(&st, &stats, &peers);
    Ok(Json(json!({
        "mode": if peers.is_empty() { "single" } else { "cluster" },
        "self": stats.node_id,
        "protocol": crate::cluster::wire::PEER_PROTOCOL_VERSION,
        "nodes": members(&st, &stats, &peers, now),
        "summary": {
            "nodes": t.nodes,
            "up": t.up,
            "suspect": t.suspect,
            "leaving": t.leaving,
            "down": t.down,
            "slots": t.slots,
            "busy": t.busy,
            "jobs": t.jobs,
            "ready": t.ready,
            "running": t.running,
            "queues": t.queues,
            "modules": t.modules,
        },
    })))
}

/// Every member this node knows: itself first, then its peers as its
/// membership sees them (the peer table `CLUSTER NODES` reads).
pub(super) fn members(
    st: &AppState,
    stats: &NodeStats,
    peers: &[PeerView],
    now: UnixMs,
) -> Vec<Value> {
    let mut out = Vec::with_capacity(peers.len() + 1);
    out.push(render::node(st, stats, now));
    out.extend(peers.iter().map(|p| render::peer(p, now)));
    out
}

/// `/api/cluster`'s summary: members by state, and figures summed over
/// the members not down (this node's own, the peers' last adverts). Jobs
/// are copies held (a replicated job counts on each holder), queues and
/// modules are counted on each member that knows them.
#[derive(Default)]
struct Totals {
    nodes: u64,
    up: u64,
    suspect: u64,
    leaving: u64,
    down: u64,
    slots: u64,
    busy: u64,
    jobs: u64,
    ready: u64,
    running: u64,
    queues: u64,
    modules: u64,
}

impl Totals {
    fn of(st: &AppState, stats: &NodeStats, peers: &[PeerView]) -> Totals {
        let x = st.handle().exec_stats();
        let leaving = st.stopping() || st.handle().cluster().leaving();
        let mut t = Totals {
            nodes: 1,
            up: u64::from(!leaving),
            leaving: u64::from(leaving),
            slots: u64::from(x.threads),
            busy: u64::from(x.busy),
            jobs: stats.jobs,
            ready: stats.ready,
            running: stats.running,
            queues: stats.queues,
            modules: stats.modules,
            ..Totals::default()
        };
        for p in peers {
            t.nodes += 1;
            match render::peer_state(p) {
                "down" => {
                    t.down += 1;
                    continue;
                }
                "suspect" => t.suspect += 1,
                "leaving" => t.leaving += 1,
                _ => t.up += 1,
            }
            if let Some(a) = &p.advert {
                t.slots += u64::from(a.exec_slots);
                t.busy += u64::from(a.exec_busy);
                t.jobs += a.jobs;
                t.ready += a.queued;
                t.running += a.running;
                t.queues += a.queue_count;
                t.modules += u64::from(a.modules);
            }
        }
        t
    }
}

/// `GET /api/nodes/{id}`: this node or any peer it knows.
pub async fn node(
    State(st): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let Some(name) = NodeName::from_hex(&id) else {
        return Err(HttpError::bad_id(format!(
            "{id:?} is not a node id (40 hex digits)"
        )));
    };
    if id.eq_ignore_ascii_case(st.handle().node_id()) {
        let stats = stats(&st).await?;
        return Ok(Json(render::node(&st, &stats, now_ms())));
    }
    match st
        .handle()
        .cluster()
        .peers()
        .into_iter()
        .find(|p| p.node == name)
    {
        Some(p) => Ok(Json(render::peer(&p, now_ms()))),
        None => Err(HttpError::not_found(format!(
            "no node {id} in this cluster"
        ))),
    }
}

/// `GET /api/activity`: this node's throughput over the last seconds and
/// its recent failures (what the dashboard draws before the feed starts).
pub async fn activity(State(st): State<AppState>) -> Json<Value> {
    let now = now_ms();
    let m = st.monitor();
    Json(json!({
        "history": m.history(now, ACTIVITY_SECS).iter().map(render::second).collect::<Vec<_>>(),
        "failures": m.failures().iter().map(render::failure).collect::<Vec<_>>(),
    }))
}

/// `GET /api/queues?cursor=&limit=`.
pub async fn queues(State(st): State<AppState>, params: Params) -> Result<Json<Value>, HttpError> {
    let mut p = parse(params, &["cursor", "limit"])?;
    let cursor = p.take("cursor");
    let limit = limit(p.take("limit"), 100)?;
    let Inspection::Queues(page) = st
        .ask(Query::Queues {
            cursor,
            limit,
            prefix: None,
        })
        .await?
    else {
        return Err(unexpected());
    };
    let now = now_ms();
    Ok(Json(json!({
        "queues": page.queues.iter().map(|q| render::queue(&st, q, now)).collect::<Vec<_>>(),
        "next": page.next,
    })))
}

/// `GET /api/queues/{name}`.
pub async fn queue(
    State(st): State<AppState>,
    Path(name): Path<String>,
) -> Result<Json<Value>, HttpError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(HttpError::bad_request(format!(
            "a queue name is 1 to {MAX_NAME} bytes"
        )));
    }
    match st.ask(Query::Queue { name: name.clone() }).await? {
        Inspection::Queue(Some(q)) => Ok(Json(render::queue(&st, &q, now_ms()))),
        Inspection::Queue(None) => Err(HttpError::not_found(format!(
            "no queue {name:?} on this node"
        ))),
        _ => Err(unexpected()),
    }
}

/// `GET /api/jobs?queue=&state=&cursor=&limit=`: oldest first.
pub async fn jobs(State(st): State<AppState>, params: Params) -> Result<Json<Value>, HttpError> {
    let mut p = parse(params, &["queue", "state", "cursor", "limit"])?;
    let queue = p.take("queue");
    let state = p
        .take("state")
        .map(|s| {
            STATES
                .iter()
                .copied()
                .find(|st| st.as_str() == s)
                .ok_or_else(|| {
                    HttpError::bad_request(format!(
                        "state {s:?} is not one of {}",
                        STATES.map(|s| s.as_str()).join(", ")
                    ))
                })
        })
        .transpose()?;
    let cursor = p.take("cursor").map(|c| job_id(&c)).transpose()?;
    let limit = limit(p.take("limit"), 50)?;
    let q = JobQuery {
        queue,
        state,
        cursor,
        limit,
        prefix: None,
    };
    let Inspection::Jobs(page) = st.ask(Query::Jobs(q)).await? else {
        return Err(unexpected());
    };
    Ok(Json(json!({
        "jobs": page.jobs.iter().map(render::job_summary).collect::<Vec<_>>(),
        "next": page.next.map(|id| id.to_string()),
    })))
}

/// The header that carries a job's `asynckey` (a header, not a query
/// parameter, so it stays out of access logs and browser history).
pub const ASYNCKEY_HEADER: &str = "x-wasque-asynckey";

/// `GET /api/jobs/{id}`: the job's JSON document, as `wasque show --json`.
/// A job added with `asynckey` is found only with its key in the
/// `X-Wasque-Asynckey` header; otherwise it is a 404 like a missing job.
pub async fn job(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    let id = job_id(&id)?;
    let show = Command::Show { id };
    let cmd = match headers.get(ASYNCKEY_HEADER) {
        Some(v) => Command::WithKey {
            key: v
                .to_str()
                .map_err(|_| HttpError::bad_request("the asynckey header must be visible ASCII"))?
                .to_string(),
            cmd: Box::new(show),
        },
        None => show,
    };
    match st.call(cmd).await? {
        Reply::Job(s) => Ok(Json(s.to_json())),
        _ => Err(unexpected()),
    }
}

/// `GET /api/jobs/{id}/explain`: why the job is where it is, as this
/// node sees it (engine/explain.rs), with the same asynckey header as
/// `GET /api/jobs/{id}`. A reason naming another node (`lent`,
/// `held-elsewhere`) gets `node_http`, that node's HTTP address from its
/// last advert, when it has one.
pub async fn job_explain(
    State(st): State<AppState>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Value>, HttpError> {
    let id = job_id(&id)?;
    let explain = Command::Explain { id };
    let cmd = match headers.get(ASYNCKEY_HEADER) {
        Some(v) => Command::WithKey {
            key: v
                .to_str()
                .map_err(|_| HttpError::bad_request("the asynckey header must be visible ASCII"))?
                .to_string(),
            cmd: Box::new(explain),
        },
        None => explain,
    };
    let Reply::Explain(x) = st.call(cmd).await? else {
        return Err(unexpected());
    };
    let mut doc = x.to_json();
    if let Some(node) = x.elsewhere()
        && let Some(addr) = peer_http(&st, node)
        && let Some(obj) = doc.as_object_mut()
    {
        obj.insert("node_http".into(), addr.into());
    }
    Ok(Json(doc))
}

/// A peer's HTTP address, from its last advert.
fn peer_http(st: &AppState, node: &str) -> Option<String> {
    let name = NodeName::from_hex(node)?;
    st.handle()
        .cluster()
        .peers()
        .into_iter()
        .find(|p| p.node == name)
        .and_then(|p| p.advert.and_then(|a| a.http_addr))
        .map(|a| a.to_string())
}

/// `GET /api/queues/{name}/dead?limit=`: the queue's dead letters held by
/// this node, oldest first, as `wasque show --json` documents.
pub async fn dead(
    State(st): State<AppState>,
    Path(name): Path<String>,
    params: Params,
) -> Result<Json<Value>, HttpError> {
    check_queue(&name)?;
    let mut p = parse(params, &["limit"])?;
    let limit = limit(p.take("limit"), 100)?;
    let cmd = dlq(
        name,
        DlqOp::List {
            count: limit as u32,
        },
    );
    match st.call(cmd).await? {
        Reply::Statuses(list) => Ok(Json(json!({
            "jobs": list.iter().map(|s| s.to_json()).collect::<Vec<_>>(),
        }))),
        _ => Err(unexpected()),
    }
}

/// `POST /api/queues/{name}/dead/requeue` with `{"ids": [...]}` or
/// `{"all": true}`: queues dead letters again with fresh attempts.
pub async fn dead_requeue(
    State(st): State<AppState>,
    Path(name): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    check_queue(&name)?;
    let Json(body) = body.map_err(|e| {
        HttpError::bad_request(format!(
            "the body must be JSON (Content-Type: application/json), {{\"ids\": [...]}} or {{\"all\": true}}: {e}"
        ))
    })?;
    let all = body.get("all").and_then(Value::as_bool) == Some(true);
    let ids = match body.get("ids") {
        Some(Value::Array(list)) if !all => list
            .iter()
            .map(|v| {
                v.as_str()
                    .map(job_id)
                    .unwrap_or_else(|| Err(HttpError::bad_request("ids are job id strings")))
            })
            .collect::<Result<Vec<JobId>, HttpError>>()?,
        None if all => Vec::new(),
        _ => {
            return Err(HttpError::bad_request(
                "give {\"ids\": [...]} or {\"all\": true}",
            ));
        }
    };
    if ids.is_empty() && !all {
        return Err(HttpError::bad_request(
            "ids is empty; {\"all\": true} requeues every one",
        ));
    }
    match st.call(dlq(name, DlqOp::Requeue { ids })).await? {
        Reply::Count(n) => Ok(Json(json!({ "requeued": n }))),
        _ => Err(unexpected()),
    }
}

/// `POST /api/jobs/{id}/cancel` (engine/cancel.rs). The body must be
/// JSON (`{}` will do): a cross-site form cannot send that without a CORS
/// preflight the node never answers (docs/SECURITY.md).
pub async fn job_cancel(
    State(st): State<AppState>,
    Path(id): Path<String>,
    body: Result<Json<Value>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Value>, HttpError> {
    let id = job_id(&id)?;
    // Only its being JSON matters.
    let Json(_) = body.map_err(|e| {
        HttpError::bad_request(format!(
            "the body must be JSON (Content-Type: application/json), {{}} will do: {e}"
        ))
    })?;
    match st.call(Command::Cancel { ids: vec![id] }).await? {
        Reply::Count(n) => Ok(Json(json!({ "cancelled": n }))),
        _ => Err(unexpected()),
    }
}

fn dlq(queue: String, op: DlqOp) -> Command {
    Command::Dlq(Box::new(Dlq {
        queue,
        op,
        key: None,
    }))
}

fn check_queue(name: &str) -> Result<(), HttpError> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(HttpError::bad_request(format!(
            "a queue name is 1 to {MAX_NAME} bytes"
        )));
    }
    Ok(())
}

/// `GET /api/modules`: the cluster's modules (the module catalogue), as
/// the request's principal sees them.
pub async fn modules(State(st): State<AppState>) -> Result<Json<Value>, HttpError> {
    let who = super::guard::WHO
        .try_with(Clone::clone)
        .unwrap_or(crate::auth::Principal::Admin);
    match st.handle().list_modules(&who).await {
        Reply::Modules(cat) => Ok(Json(json!({
            "modules": cat.modules.iter().map(render::module).collect::<Vec<_>>(),
            "unanswered": cat.unanswered,
        }))),
        Reply::Error(e) => Err(HttpError::from_wire(e)),
        _ => Err(unexpected()),
    }
}

/// The node's counts, from the engine.
pub(super) async fn stats(st: &AppState) -> Result<NodeStats, HttpError> {
    match st.ask(Query::Stats).await? {
        Inspection::Stats(s) => Ok(s),
        _ => Err(unexpected()),
    }
}

/// Longest queue name accepted in a path.
const MAX_NAME: usize = 1024;

const STATES: [JobState; 8] = [
    JobState::WaitRepl,
    JobState::Waiting,
    JobState::Queued,
    JobState::Active,
    JobState::Done,
    JobState::Failed,
    JobState::Acked,
    JobState::Dead,
];

fn unexpected() -> HttpError {
    HttpError::internal("unexpected answer from the engine")
}

fn job_id(s: &str) -> Result<JobId, HttpError> {
    JobId::from_str(s).map_err(|_| {
        HttpError::bad_id(format!(
            "{s:?} is not a job id (a canonical UUID, like 019ab6f0-3c2e-7a10-9f2c-bd41000a3e5c)"
        ))
    })
}

fn limit(v: Option<String>, default: usize) -> Result<usize, HttpError> {
    match v {
        None => Ok(default),
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
            _ => Err(HttpError::bad_request(format!(
                "limit {s:?} is not a number from 1 to {MAX_PAGE}"
            ))),
        },
    }
}

/// Query parameters, checked against the names a route takes.
struct Parsed(Vec<(String, String)>);

impl Parsed {
    /// The parameter's value; an empty value counts as absent.
    fn take(&mut self, name: &str) -> Option<String> {
        let i = self.0.iter().position(|(k, _)| k == name)?;
        Some(self.0.swap_remove(i).1).filter(|v| !v.is_empty())
    }
}

fn parse(params: Params, allowed: &[&str]) -> Result<Parsed, HttpError> {
    let QueryParams(list) =
        params.map_err(|e| HttpError::bad_request(format!("bad query string: {e}")))?;
    for (i, (k, _)) in list.iter().enumerate() {
        if !allowed.contains(&k.as_str()) {
            return Err(HttpError::bad_request(format!(
                "unknown parameter {k:?}; this route takes {}",
                allowed.join(", ")
            )));
        }
        if list[..i].iter().any(|(k2, _)| k2 == k) {
            return Err(HttpError::bad_request(format!(
                "parameter {k:?} given twice"
            )));
        }
    }
    Ok(Parsed(list))
}
