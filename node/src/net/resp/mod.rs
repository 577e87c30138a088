//! The RESP front door: Redis's protocol (RESP2) over TCP on the node's
//! port, speaking Disque's commands, so `redis-cli -p 7711` and Disque
//! client libraries work against a node.
//!
//! Layout, as in mini-redis: [`frame`] reads requests and writes replies,
//! `connection` serves one client (pipelining, bounds, AUTH, reply order),
//! `cmd` turns a request into an [`crate::api::Command`] (one file per
//! command group) and renders the engine's reply; `pubsub` serves
//! `SUBSCRIBE` (job events). Semantics live in the
//! engine; nothing here touches job state.
//!
//! Bounds, each configurable: `proto-max-bulk-len` (one argument, at least
//! the module-size bound so MODULE PUT fits), `resp-max-args`,
//! `resp-max-request-bytes` (a whole request), `maxclients`, `timeout`
//! (idle seconds; a client waiting for a reply is never idle), and
//! `resp-max-output-bytes` (reply bytes held for one client; reading pauses
//! past it). Before AUTH on a node with a password, the small fixed bounds
//! of [`frame::Limits::unauthenticated`]. A request over a bound is
//! answered `-ERR Protocol error: ...` and its connection closed, since the
//! stream cannot be trusted after it.

pub(crate) mod cmd;
mod connection;
pub mod frame;
pub mod pubsub;
mod read;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Config;
use crate::runtime::Handle;

/// The front door's state shared by its connections.
pub struct Shared {
    pub config: Config,
    pub limits: frame::Limits,
    pub max_clients: AtomicUsize,
    /// Idle seconds before a client is closed; 0 = never.
    pub idle_timeout_secs: AtomicU64,
    /// Requests answered-but-unsent a client may have before reading pauses.
    pub max_pending: usize,
    /// Reply bytes rendered but unsent (plus heavy replies reserved) a
    /// client may hold before the node stops reading its requests
    /// (`resp-max-output-bytes`).
    pub max_output: usize,
    /// The largest reply a heavy request (SHOW, RESULT, ...) may get: a
    /// body, an output and a stderr at their bounds, plus the fields.
    pub heavy_reply: usize,
    /// DEBUG FLUSHALL allowed (test nodes).
    pub debug_commands: bool,
    pub clients: AtomicUsize,
    pub blocked: AtomicI64,
    pub total_connections: AtomicU64,
    pub total_commands: AtomicU64,
    pub rejected: AtomicU64,
    /// Subscribers disconnected for reading too slowly.
    pub subscribers_dropped: AtomicU64,
}

impl Shared {
    pub fn new(config: &Config) -> Shared {
        Shared {
            limits: frame::Limits {
                max_bulk: config.resp_max_bulk_bytes,
                max_args: config.resp_max_args,
                max_inline: 64 << 10,
                max_request: config.resp_max_request_bytes,
            },
            max_clients: AtomicUsize::new(config.max_connections),
            idle_timeout_secs: AtomicU64::new(config.resp_idle_timeout_secs),
            max_pending: 64 << 10,
            max_output: config.resp_max_output_bytes,
            heavy_reply: config
                .max_body_bytes
                .saturating_add(config.max_output_bytes)
                .saturating_add(config.max_stderr_bytes)
                .saturating_add(64 << 10),
            debug_commands: config.enable_debug_command,
            clients: AtomicUsize::new(0),
            blocked: AtomicI64::new(0),
            total_connections: AtomicU64::new(0),
            total_commands: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            subscribers_dropped: AtomicU64::new(0),
            config: config.clone(),
        }
    }
}

/// Binds the TCP listener.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Accepts clients until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    handle: Handle,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = stop.changed() => break,
        };
        let (stream, remote) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: pause, keep serving.
                tracing::warn!("accepting a RESP client: {e}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        shared.total_connections.fetch_add(1, Ordering::Relaxed);
        let _ = stream.set_nodelay(true);
        if shared.clients.load(Ordering::Relaxed) >= shared.max_clients.load(Ordering::Relaxed) {
            shared.rejected.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(%remote, "refusing RESP client: at maxclients");
            tokio::spawn(connection::refuse(stream));
            continue;
        }
        shared.clients.fetch_add(1, Ordering::Relaxed);
        let (shared, handle, stop) = (shared.clone(), handle.clone(), stop.clone());
        tokio::spawn(async move {
            connection::serve(stream, shared.clone(), handle, stop).await;
            shared.clients.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
