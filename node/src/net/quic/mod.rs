//! The QUIC front door for clients (ALPN `wasque/1`): accepts connections,
//! and per connection serves a pipelined request stream and module-upload
//! streams. It translates `proto` frames into [`crate::api::Command`]s for
//! the runtime and the engine's [`crate::api::Reply`]s back into frames; it
//! never touches job state itself.

mod connection;
mod translate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;

use crate::net::identity::{Identity, IdentityError};
use crate::runtime::Handle;
use wasque_sdk::PEER_ALPN;

/// Settings of the QUIC front door.
#[derive(Clone, Debug)]
pub struct QuicConfig {
    pub addr: SocketAddr,
    /// Largest request frame.
    pub max_frame_bytes: usize,
    /// Largest reply frame: a job's body, output and stderr at their
    /// maxima fit (`Config::max_reply_bytes`); told to clients in the hello.
    pub max_reply_bytes: usize,
    /// Requests one connection may have unanswered (`quic-max-inflight`).
    pub max_inflight: usize,
    pub max_module_bytes: usize,
    pub max_connections: usize,
}

/// How the node's endpoint is tuned (idle timeout and windows).
pub const TUNING: crate::cluster::QuicTuning = crate::cluster::QuicTuning {
    idle_timeout: Duration::from_secs(60),
};

/// Binds the endpoint with the node's TLS (see
/// [`crate::cluster::server_tls`]). Returns it so the caller knows the
/// bound address.
pub fn bind(
    cfg: &QuicConfig,
    identity: &Identity,
    cluster_ca: Option<&crate::cluster::ca::ClusterCa>,
) -> Result<quinn::Endpoint, IdentityError> {
    let tls = crate::cluster::server_tls(&identity.cert_chain, &identity.key, cluster_ca)?;
    let server = TUNING.server_config(tls)?;
    quinn::Endpoint::server(server, cfg.addr).map_err(|source| IdentityError::Io {
        path: format!("udp {}", cfg.addr).into(),
        source,
    })
}

/// Accepts connections until `stop` turns true. Peer and join connections
/// are served at once; client connections once `clients_open` is true.
pub async fn serve(
    endpoint: quinn::Endpoint,
    cfg: QuicConfig,
    handle: Handle,
    cluster: crate::cluster::Cluster,
    clients_open: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
) {
    let cfg = Arc::new(cfg);
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => i,
            _ = stop.changed() => break,
        };
        let Some(incoming) = incoming else { break };
        if live.load(Ordering::Relaxed) >= cfg.max_connections {
            tracing::warn!(remote = %incoming.remote_address(), "refusing connection: at maxclients");
            incoming.refuse();
            continue;
        }
        live.fetch_add(1, Ordering::Relaxed);
        let (cfg, handle, live, stop) = (cfg.clone(), handle.clone(), live.clone(), stop.clone());
        let cluster = cluster.clone();
        let mut clients_open = clients_open.clone();
        tokio::spawn(async move {
            match incoming.await {
                Ok(conn) if alpn(&conn).as_deref() == Some(PEER_ALPN) => {
                    cluster.serve_peer(conn).await
                }
                Ok(conn) if alpn(&conn).as_deref() == Some(crate::cluster::ca::JOIN_ALPN) => {
                    cluster.serve_join(conn).await
                }
                Ok(conn) => {
                    // Clients are served once the node opened its doors
                    // (after a restart, once its peers are back).
                    if clients_open.wait_for(|open| *open).await.is_ok() {
                        connection::serve(conn, cfg, handle, stop).await
                    }
                }
                Err(e) => tracing::debug!("handshake failed: {e}"),
            }
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
    endpoint.close(0u32.into(), b"node shutting down");
}

/// The ALPN protocol a connection negotiated.
fn alpn(conn: &quinn::Connection) -> Option<Vec<u8>> {
    conn.handshake_data()?
        .downcast::<quinn::crypto::rustls::HandshakeData>()
        .ok()?
        .protocol
}
