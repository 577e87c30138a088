//! The cluster: the node's peers and the QUIC links to them (peer ALPN,
//! certificates both ways), SWIM membership through foca, capacity
//! adverts, and module fetches by hash. The job protocol itself
//! (replication, acks, re-queue, federation) is the engine's
//! (`engine/cluster.rs`); this module only carries its messages and tells
//! the driver which peers are alive.
//!
//! - `wire.rs` — the frames and their versioned, bounded encoding.
//! - `trust.rs` — loopback trust mode: certificate pinning and verifiers.
//! - `member.rs` — the SWIM member identity.
//! - `peers.rs` — the peer table (addresses, liveness, adverts).
//! - `link.rs` — outgoing connections, one per peer, and what they carry.
//! - `inbound.rs` — connections peers open to this node.
//! - `membership.rs` — the task that runs foca, MEET, FORGET, LEAVING.

mod inbound;
mod link;
mod member;
mod membership;
mod peers;
pub mod trust;
pub mod wire;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

pub use member::Member;
pub use peers::PeerView;
pub use wire::Advert;

use crate::engine::PeerMsg;
use crate::exec::Executor;
use crate::job::{ModuleHash, NodeName};
use crate::net::identity::Identity;
use link::LinkTx;
use peers::PeerTable;
use trust::Pins;

/// What the cluster tells the driver.
#[derive(Debug)]
pub enum PeerEvent {
    /// A peer engine's message.
    Message { from: NodeName, msg: PeerMsg },
    /// The live peers that take jobs changed.
    Peers(Vec<NodeName>),
}

/// Settings of the cluster layer.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    pub me: NodeName,
    /// The address peers reach this node at (the bound QUIC address).
    pub addr: SocketAddr,
    /// `cluster-node-timeout`: how long a silent peer takes to be declared
    /// down.
    pub node_timeout: Duration,
    /// Largest peer frame accepted.
    pub max_frame_bytes: usize,
    /// `--join HOST:PORT` addresses met at start.
    pub joins: Vec<String>,
    /// Where the peer list is kept across restarts (`DATA_DIR/peers`): a
    /// restarted node meets them again, as Disque rereads its nodes.conf.
    pub peers_file: Option<std::path::PathBuf>,
}

/// Why a cluster operation failed, for the user.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{0}")]
    Connect(String),
    #[error("{0}")]
    Refused(String),
    #[error("the node is shutting down")]
    Stopped,
}

/// The cluster layer's handle. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: ClusterConfig,
    hello: wire::Hello,
    endpoint: quinn::Endpoint,
    dial: quinn::ClientConfig,
    pins: Pins,
    links: Mutex<HashMap<NodeName, LinkTx>>,
    table: RwLock<PeerTable>,
    events: mpsc::UnboundedSender<PeerEvent>,
    cmds: mpsc::UnboundedSender<membership::Cmd>,
    executor: Executor,
    advert: RwLock<Advert>,
    leaving: AtomicBool,
    link_gen: AtomicU64,
    stats: Stats,
    /// Fault injection for tests (`DEBUG PARTITION`): nothing goes to or
    /// comes from these nodes.
    cut: RwLock<std::collections::HashSet<NodeName>>,
}

/// Counters for INFO and metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub frames_out: AtomicU64,
    pub frames_in: AtomicU64,
    pub frames_dropped: AtomicU64,
    pub streams_refused: AtomicU64,
    pub connections_refused: AtomicU64,
    pub modules_served: AtomicU64,
}

impl Cluster {
    /// Starts the cluster layer on the node's QUIC endpoint (which must
    /// accept the peer ALPN, see [`server_tls`]). Peer events go to
    /// `events`.
    pub fn start(
        cfg: ClusterConfig,
        endpoint: quinn::Endpoint,
        identity: &Identity,
        executor: Executor,
        events: mpsc::UnboundedSender<PeerEvent>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Cluster, crate::net::identity::IdentityError> {
        let dial = dial_config(identity)?;
        let (cmds_tx, cmds_rx) = mpsc::unbounded_channel();
        let incarnation = crate::runtime::now_ms();
        let hello = wire::Hello {
            node: cfg.me,
            addr: cfg.addr,
            incarnation,
        };
        let inner = Arc::new(Inner {
            hello,
            endpoint,
            dial,
            pins: Pins::default(),
            links: Mutex::new(HashMap::new()),
            table: RwLock::new(PeerTable::default()),
            events,
            cmds: cmds_tx,
            executor,
            advert: RwLock::new(Advert::default()),
            leaving: AtomicBool::new(false),
            link_gen: AtomicU64::new(0),
            stats: Stats::default(),
            cut: RwLock::new(Default::default()),
            cfg,
        });
        let cluster = Cluster { inner };
        tokio::spawn(membership::run(cluster.clone(), cmds_rx, stop));
        Ok(cluster)
    }

    pub fn me(&self) -> NodeName {
        self.inner.cfg.me
    }

    pub fn addr(&self) -> SocketAddr {
        self.inner.cfg.addr
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Sends an engine message to a peer (dropped if the peer is unknown
    /// or unreachable: the engine's protocol retries what matters).
    pub fn send(&self, to: NodeName, msg: PeerMsg) {
        link::send(&self.inner, to, link::Out::Frame(wire::Frame::Engine(msg)));
    }

    /// Serves a peer connection (the QUIC front door hands over every
    /// connection that negotiated the peer ALPN).
    pub async fn serve_peer(&self, conn: quinn::Connection) {
        inbound::serve(self.inner.clone(), conn).await
    }

    /// `CLUSTER MEET`: introduces this node to the one at `addr`.
    pub async fn meet(&self, addr: SocketAddr) -> Result<NodeName, ClusterError> {
        let (tx, rx) = oneshot::channel();
        self.inner
            .cmds
            .send(membership::Cmd::Meet(addr, Some(tx)))
            .map_err(|_| ClusterError::Stopped)?;
        rx.await.map_err(|_| ClusterError::Stopped)?
    }

    /// `CLUSTER FORGET`: drops a node from the table (it comes back if it
    /// is alive and gossips again).
    pub fn forget(&self, node: NodeName) -> bool {
        let known = self
            .inner
            .table
            .write()
            .map(|mut t| t.forget(&node))
            .unwrap_or(false);
        self.inner.pins.forget(&node);
        let _ = self.inner.cmds.send(membership::Cmd::Forget(node));
        known
    }

    /// `CLUSTER RESET HARD`: forgets every peer.
    pub fn reset(&self) {
        let _ = self.inner.cmds.send(membership::Cmd::Reset);
    }

    /// `CLUSTER LEAVING yes|no`.
    pub fn set_leaving(&self, on: bool) {
        self.inner.leaving.store(on, Ordering::Relaxed);
        if let Ok(mut a) = self.inner.advert.write() {
            a.leaving = on;
        }
    }

    pub fn leaving(&self) -> bool {
        self.inner.leaving.load(Ordering::Relaxed)
    }

    /// This node's own capacity advert (the driver refreshes it).
    pub fn set_advert(&self, mut a: Advert) {
        a.leaving = self.leaving();
        if let Ok(mut mine) = self.inner.advert.write() {
            *mine = a;
        }
    }

    pub fn advert(&self) -> Advert {
        self.inner
            .advert
            .read()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// `DEBUG PARTITION`: cuts this node off from `nodes` (both ways)
    /// until [`Cluster::heal`]. For fault tests; the node is started with
    /// `--enable-debug-command`.
    pub fn partition(&self, nodes: &[NodeName]) {
        if let Ok(mut cut) = self.inner.cut.write() {
            cut.extend(nodes.iter().copied());
        }
        for n in nodes {
            link::drop_link(&self.inner, n);
        }
    }

    /// `DEBUG HEAL`: ends every partition.
    pub fn heal(&self) {
        if let Ok(mut cut) = self.inner.cut.write() {
            cut.clear();
        }
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<PeerView> {
        self.inner
            .table
            .read()
            .map(|t| t.view())
            .unwrap_or_default()
    }

    /// Fetches a module's bytes from a peer by hash (its own stream), and
    /// checks them against the hash.
    pub async fn fetch_module(
        &self,
        from: NodeName,
        hash: ModuleHash,
    ) -> Result<Vec<u8>, ClusterError> {
        let addr = self
            .inner
            .table
            .read()
            .ok()
            .and_then(|t| t.addr_of(&from))
            .ok_or_else(|| ClusterError::Connect(format!("node {} is unknown", from.short())))?;
        if self.inner.is_cut(&from) {
            return Err(ClusterError::Connect(format!(
                "node {} is cut off (DEBUG PARTITION)",
                from.short()
            )));
        }
        let bytes = link::request(
            &self.inner,
            addr,
            Some(from),
            wire::Frame::FetchModule(hash),
        )
        .await?;
        match bytes {
            wire::Frame::Module(Some(b)) => {
                if ModuleHash::of(&b) != hash {
                    return Err(ClusterError::Refused(format!(
                        "node {} sent bytes that do not hash to module {hash}",
                        from.short()
                    )));
                }
                Ok(b)
            }
            wire::Frame::Module(None) => Err(ClusterError::Refused(format!(
                "node {} does not have module {hash}",
                from.short()
            ))),
            other => Err(ClusterError::Refused(format!(
                "unexpected answer to a module fetch: {other:?}"
            ))),
        }
    }
}

impl Inner {
    fn is_cut(&self, node: &NodeName) -> bool {
        self.cut.read().is_ok_and(|c| c.contains(node))
    }

    fn publish_peers(&self) {
        let targets = self.table.read().map(|t| t.targets()).unwrap_or_default();
        let _ = self.events.send(PeerEvent::Peers(targets));
    }
}

/// The QUIC client config for dialing peers: the peer ALPN and this
/// node's certificate as the client certificate.
fn dial_config(
    identity: &Identity,
) -> Result<quinn::ClientConfig, crate::net::identity::IdentityError> {
    use crate::net::identity::IdentityError;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .dangerous()
        .with_custom_certificate_verifier(trust::AnyServerCert::new())
        .with_client_auth_cert(identity.cert_chain.clone(), identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    tls.alpn_protocols = vec![wasque_sdk::PEER_ALPN.to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    let mut cfg = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.keep_alive_interval(Some(Duration::from_secs(2)));
    transport.max_idle_timeout(Some(
        quinn::IdleTimeout::try_from(Duration::from_secs(20))
            .map_err(|e| IdentityError::Tls(e.to_string()))?,
    ));
    transport.stream_receive_window((8u32 << 20).into());
    transport.receive_window((32u32 << 20).into());
    transport.send_window(32 << 20);
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// The server-side TLS of the node's endpoint: client and peer ALPNs, and
/// a certificate asked of (but not required from) every connection.
pub fn server_tls(
    identity: &Identity,
) -> Result<rustls::ServerConfig, crate::net::identity::IdentityError> {
    use crate::net::identity::IdentityError;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?
        .with_client_cert_verifier(trust::AnyClientCert::new())
        .with_single_cert(identity.cert_chain.clone(), identity.key.clone_key())
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    cfg.alpn_protocols = vec![
        wasque_sdk::CLIENT_ALPN.to_vec(),
        wasque_sdk::PEER_ALPN.to_vec(),
    ];
    cfg.max_early_data_size = 0;
    Ok(cfg)
}

/// Whether an address is loopback (IPv4-mapped IPv6 included).
pub fn is_loopback(addr: &SocketAddr) -> bool {
    match addr.ip() {
        std::net::IpAddr::V4(v4) => v4.is_loopback(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback())
        }
    }
}
