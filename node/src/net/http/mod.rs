//! The HTTP front door (axum): a read-only JSON API, `/metrics` in
//! Prometheus text format, `/healthz` and `/readyz`, a server-sent event
//! feed and the dashboard page. Default `127.0.0.1:7780` (node port + 69).
//!
//! Like the other front doors it never touches job state: every answer
//! about jobs and queues is an [`crate::api::Query`] sent to the engine
//! through the runtime [`Handle`], awaited with a bound
//! ([`ENGINE_TIMEOUT`]).
//!
//! Layout: `api.rs` the JSON API, `render.rs` its documents, `feed.rs` the
//! event feed and its stats ticker, `ops.rs` metrics and health,
//! `dashboard.rs` the page (`dashboard/` holds its HTML, CSS and JS,
//! embedded at build time), `openapi.json` the API's description, kept true
//! by tests that compare it with [`routes`] and validate live answers.
//!
//! Locks (`guard.rs`, one middleware for every route): a `Host` that does
//! not name the node is refused (DNS rebinding), and once the node has a
//! password every route but `/healthz`, `/readyz` and the dashboard page
//! needs `Authorization: Bearer <password>`.
//!
//! Bounds: at most [`MAX_IN_FLIGHT`] requests at once (more get 503), at
//! most [`feed::MAX_FEED_CLIENTS`] feed clients, pages of at most
//! [`crate::api::MAX_PAGE`] entries.

mod api;
mod dashboard;
mod error;
mod feed;
mod guard;
mod ops;
mod render;
mod schedules;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{MethodRouter, get, post};
use tokio::sync::{Semaphore, watch};

pub use error::HttpError;

use crate::api::{Command, Inspection, Query, Reply};
use crate::monitor::Monitor;
use crate::runtime::Handle;

/// The OpenAPI description of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// Longest wait for the engine's answer before a 503.
pub const ENGINE_TIMEOUT: Duration = Duration::from_secs(5);

/// Requests served at once; more are answered 503 at once.
pub const MAX_IN_FLIGHT: usize = 256;

/// What every handler shares. Cheap to clone.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    handle: Handle,
    monitor: Monitor,
    started: Instant,
    quic_addr: SocketAddr,
    http_addr: SocketAddr,
    /// `http-hosts`: names answered besides localhost and addresses.
    hosts: Vec<String>,
    stop: watch::Receiver<bool>,
    in_flight: Arc<Semaphore>,
    feed_clients: AtomicUsize,
    /// One scrape at a time fills the metrics snapshot and encodes it.
    scrape: tokio::sync::Mutex<()>,
}

impl AppState {
    pub fn new(
        handle: Handle,
        monitor: Monitor,
        started: Instant,
        quic_addr: SocketAddr,
        http_addr: SocketAddr,
        hosts: Vec<String>,
        stop: watch::Receiver<bool>,
    ) -> AppState {
        AppState {
            inner: Arc::new(Inner {
                handle,
                monitor,
                started,
                quic_addr,
                http_addr,
                hosts,
                stop,
                in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
                feed_clients: AtomicUsize::new(0),
                scrape: tokio::sync::Mutex::new(()),
            }),
        }
    }

    fn handle(&self) -> &Handle {
        &self.inner.handle
    }

    fn monitor(&self) -> &Monitor {
        &self.inner.monitor
    }

    fn stopping(&self) -> bool {
        *self.inner.stop.borrow()
    }

    /// Asks the engine a read-only question.
    async fn ask(&self, q: Query) -> Result<Inspection, HttpError> {
        match self.call(Command::Inspect(q)).await? {
            Reply::Inspect(i) => Ok(*i),
            other => Err(HttpError::internal(format!(
                "unexpected engine answer: {other:?}"
            ))),
        }
    }

    /// Sends a command to the engine and awaits its reply (bounded).
    /// One engine command, as the request's principal ([`guard::WHO`]):
    /// a tenant's is scoped to its namespace.
    async fn call(&self, cmd: Command) -> Result<Reply, HttpError> {
        let cmd = match guard::WHO.try_with(Clone::clone) {
            Ok(who) => self
                .handle()
                .scoped(&who, cmd)
                .map_err(HttpError::from_wire)?,
            Err(_) => cmd,
        };
        match tokio::time::timeout(ENGINE_TIMEOUT, self.handle().call(cmd)).await {
            Err(_) => Err(HttpError::unavailable(format!(
                "the engine did not answer within {} s",
                ENGINE_TIMEOUT.as_secs()
            ))),
            Ok(Reply::Error(e)) => Err(HttpError::from_wire(e)),
            Ok(reply) => Ok(reply),
        }
    }
}

/// The routes that change something (POST, JSON bodies only): an
/// operator's dead-letter requeue, a job's cancel, a schedule's removal.
pub const WRITE_PATHS: &[&str] = &[
    "/api/queues/{name}/dead/requeue",
    "/api/jobs/{id}/cancel",
    "/api/schedules/{name}/remove",
];

/// Every route of the API, path and handlers. The router is built from
/// this list, and a test checks it against `openapi.json`.
pub fn routes() -> Vec<(&'static str, MethodRouter<AppState>)> {
    vec![
        ("/", get(dashboard::page)),
        ("/healthz", get(ops::healthz)),
        ("/readyz", get(ops::readyz)),
        ("/metrics", get(ops::metrics)),
        ("/api/openapi.json", get(ops::openapi)),
        ("/api/cluster", get(api::cluster)),
        ("/api/nodes/{id}", get(api::node)),
        ("/api/activity", get(api::activity)),
        ("/api/queues", get(api::queues)),
        ("/api/queues/{name}", get(api::queue)),
        ("/api/jobs", get(api::jobs)),
        ("/api/jobs/{id}", get(api::job)),
        ("/api/jobs/{id}/explain", get(api::job_explain)),
        ("/api/modules", get(api::modules)),
        ("/api/queues/{name}/dead", get(api::dead)),
        ("/api/queues/{name}/dead/requeue", post(api::dead_requeue)),
        ("/api/jobs/{id}/cancel", post(api::job_cancel)),
        ("/api/schedules", get(schedules::list)),
        ("/api/schedules/{name}", get(schedules::show)),
        ("/api/schedules/{name}/remove", post(schedules::remove)),
        ("/api/events", get(feed::events)),
    ]
}

/// The router with its state, locks, bounds and JSON 404s. The guard is
/// the outer layer: a refused request takes no in-flight permit.
pub fn router(state: AppState) -> Router {
    let mut r = Router::new();
    for (path, handlers) in routes() {
        r = r.route(path, handlers);
    }
    r.fallback(no_route)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            in_flight,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::guard,
        ))
        .with_state(state)
}

/// Serves until the node stops.
pub async fn serve(listener: tokio::net::TcpListener, state: AppState) {
    let ticker = tokio::spawn(feed::ticker(state.clone()));
    let mut stop = state.inner.stop.clone();
    let app = router(state);
    let shutdown = async move {
        let _ = stop.wait_for(|s| *s).await;
    };
    let app = app.into_make_service_with_connect_info::<guard::LocalAddr>();
    if let Err(e) = axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
    {
        tracing::warn!("http server ended: {e}");
    }
    ticker.abort();
}

async fn no_route(req: Request) -> HttpError {
    HttpError::not_found(format!("no route {} {}", req.method(), req.uri().path()))
}

/// Bounds the requests in flight.
async fn in_flight(State(st): State<AppState>, req: Request, next: Next) -> Response {
    match st.inner.in_flight.clone().try_acquire_owned() {
        Ok(permit) => {
            let r = next.run(req).await;
            drop(permit);
            r
        }
        Err(_) => HttpError::unavailable(format!(
            "the node is serving its maximum of {MAX_IN_FLIGHT} HTTP requests; retry"
        ))
        .into_response(),
    }
}
