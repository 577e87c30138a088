//! The cluster: the node's peers and the QUIC links to them (peer ALPN,
//! certificates both ways), SWIM membership through foca, capacity
//! adverts, and module fetches by hash. The job protocol itself
//! (replication, acks, re-queue, federation) is the engine's
//! (`engine/cluster.rs`); this module only carries its messages and tells
//! the driver which peers are alive.
//!
//! - `wire.rs` — the frames and their versioned, bounded encoding.
//! - `trust.rs` — loopback trust mode: certificate pinning and verifiers.
//! - `ca.rs` — ca trust mode: the cluster CA, join tokens, joining.
//! - `admission.rs` — ca trust mode: which tokens admit, which nodes are
//!   forgotten for good; the same set on every member.
//! - `member.rs` — the SWIM member identity.
//! - `peers.rs` — the peer table (addresses, liveness, adverts).
//! - `link.rs` — outgoing connections, one per peer, and what they carry.
//! - `inbound.rs` — connections peers open to this node.
//! - `membership.rs` — the task that runs foca, MEET, FORGET, LEAVING.
//! - `discovery.rs` — the node list clients learn the cluster from.

pub mod admission;
mod announced;
pub mod ca;
pub mod discovery;
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
    /// A peer's capacity advert.
    Load(NodeName, Advert),
    /// A peer's question about this node's modules (the catalogue).
    Modules {
        ask: wire::ModuleAsk,
        reply: tokio::sync::oneshot::Sender<wire::ModuleAnswer>,
    },
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
    /// `DATA_DIR/tls`, where `CLUSTER INIT` writes the cluster CA.
    pub tls_dir: std::path::PathBuf,
    /// The tenant registry, kept the same on every node: adverts carry
    /// its digest, and a peer whose digest differs is sent the records.
    pub tenants: std::sync::Arc<crate::tenant::Tenants>,
    /// The schedule registry, replicated the same way (`sched/`).
    pub schedules: std::sync::Arc<crate::sched::Schedules>,
    /// The module name table, replicated the same way (`catalogue.rs`).
    pub names: std::sync::Arc<crate::catalogue::ModuleNames>,
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
    dial: RwLock<quinn::ClientConfig>,
    /// The node's own (client-facing) certificate, for rebuilding TLS.
    own_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    own_key: Arc<rustls::pki_types::PrivateKeyDer<'static>>,
    /// `ca` trust mode's credentials; `None` in loopback mode.
    ca: RwLock<Option<ca::ClusterCa>>,
    /// Join tokens and forgotten nodes (`DATA_DIR/tls/admission.json`).
    admission: Arc<admission::Admission>,
    ca_mode: AtomicBool,
    quic_tuning: QuicTuning,
    pins: Pins,
    links: Mutex<HashMap<NodeName, LinkTx>>,
    table: RwLock<PeerTable>,
    events: mpsc::UnboundedSender<PeerEvent>,
    cmds: mpsc::UnboundedSender<membership::Cmd>,
    executor: Executor,
    advert: RwLock<Advert>,
    /// Modules announced on upload, kept in the advert until the engine
    /// lists them (`announced.rs`).
    announced: Mutex<announced::Announced>,
    /// The node's RESP and HTTP addresses, put in its adverts (they are
    /// bound after the cluster layer starts).
    doors: std::sync::OnceLock<(SocketAddr, Option<SocketAddr>)>,
    /// Counts changes of the members' states (up, suspect, down, leaving,
    /// forgotten), for watchers that show them (the HTTP feed).
    members: tokio::sync::watch::Sender<u64>,
    leaving: AtomicBool,
    /// `cluster-node-timeout` now, in ms: the start's value until
    /// `CONFIG SET` changes it.
    node_timeout_ms: AtomicU64,
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
    /// Gossip datagrams dropped because their connection's peer had not
    /// yet said, in a verified `Hello`, who it is.
    pub gossip_dropped: AtomicU64,
}

impl Cluster {
    /// Starts the cluster layer on the node's QUIC endpoint (which must
    /// accept the peer ALPN, see [`server_tls`]). Peer events go to
    /// `events`.
    #[allow(clippy::too_many_arguments)]
    pub fn start(
        cfg: ClusterConfig,
        endpoint: quinn::Endpoint,
        identity: &Identity,
        cluster_ca: Option<ca::ClusterCa>,
        quic_tuning: QuicTuning,
        executor: Executor,
        events: mpsc::UnboundedSender<PeerEvent>,
        stop: tokio::sync::watch::Receiver<bool>,
    ) -> Result<Cluster, crate::net::identity::IdentityError> {
        let own_key = Arc::new(identity.key.clone_key());
        let dial = dial_config(&identity.cert_chain, &own_key, cluster_ca.as_ref())?;
        let pins = Pins::load(cfg.tls_dir.join("peer-pins"))
            .map_err(crate::net::identity::IdentityError::Tls)?;
        let admission = Arc::new(
            admission::Admission::open(&cfg.tls_dir)
                .map_err(crate::net::identity::IdentityError::Tls)?,
        );
        // A CA made before the admission set existed: its join secret
        // becomes the set's first token (no expiry, as it had).
        if let Some(secret) = cluster_ca.as_ref().and_then(|c| c.init_secret.as_ref())
            && admission.tokens().is_empty()
        {
            admission
                .add_token(secret, crate::runtime::now_ms(), 0)
                .map_err(crate::net::identity::IdentityError::Tls)?;
        }
        let (cmds_tx, cmds_rx) = mpsc::unbounded_channel();
        let incarnation = crate::runtime::now_ms();
        let hello = wire::Hello {
            node: cfg.me,
            addr: cfg.addr,
            incarnation,
            client_ca_pem: identity.ca_pem.clone(),
        };
        let inner = Arc::new(Inner {
            hello,
            endpoint,
            dial: RwLock::new(dial),
            own_chain: identity.cert_chain.clone(),
            own_key,
            ca_mode: AtomicBool::new(cluster_ca.is_some()),
            ca: RwLock::new(cluster_ca),
            admission,
            quic_tuning,
            pins,
            links: Mutex::new(HashMap::new()),
            table: RwLock::new(PeerTable::default()),
            events,
            cmds: cmds_tx,
            executor,
            advert: RwLock::new(Advert::default()),
            announced: Mutex::new(announced::Announced::default()),
            doors: std::sync::OnceLock::new(),
            members: tokio::sync::watch::channel(0).0,
            leaving: AtomicBool::new(false),
            node_timeout_ms: AtomicU64::new(
                cfg.node_timeout.max(MIN_NODE_TIMEOUT).as_millis() as u64
            ),
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

    /// PEM of the CA that signed this node's client-facing certificate.
    pub fn client_ca_pem(&self) -> &str {
        &self.inner.hello.client_ca_pem
    }

    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// Sends an engine message to a peer (dropped if the peer is unknown
    /// or unreachable: the engine's protocol retries what matters).
    pub fn send(&self, to: NodeName, msg: PeerMsg) {
        link::send(&self.inner, to, link::Out::Frame(wire::Frame::Engine(msg)));
    }

    /// Sends one engine message to several peers, encoding it once.
    pub fn send_many(&self, to: &[NodeName], msg: PeerMsg) {
        if to.len() == 1 {
            return self.send(to[0], msg);
        }
        let mut buf = Vec::new();
        if let Err(e) = wire::encode(&wire::Frame::Engine(msg), &mut buf) {
            tracing::warn!("peer message not encodable: {e}");
            return;
        }
        let bytes = bytes::Bytes::from(buf);
        for n in to {
            link::send(&self.inner, *n, link::Out::Encoded(bytes.clone()));
        }
    }

    /// Serves a peer connection (the QUIC front door hands over every
    /// connection that negotiated the peer ALPN).
    pub async fn serve_peer(&self, conn: quinn::Connection) {
        inbound::serve(self.inner.clone(), conn).await
    }

    /// Whether `addr` may be met at all: beyond loopback only in `ca`
    /// trust mode (loopback mode trusts on first use). `CLUSTER MEET`
    /// asks before it answers; [`Cluster::meet`] checks again.
    pub fn may_meet(&self, addr: &SocketAddr) -> Result<(), ClusterError> {
        membership::may_meet(&self.inner, addr).map_err(ClusterError::Refused)
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
        // In ca mode forgetting is revoking: every member refuses the node
        // (its id and the certificate it was seen with) from now on.
        // An id this node never met is not revoked (a typo would be
        // permanent): FORGET answers it as unknown.
        let met = self.inner.pins.get(&node).is_some()
            || self
                .inner
                .table
                .read()
                .is_ok_and(|t| t.get(&node).is_some());
        if self.inner.ca_mode() && met {
            let certs = self.inner.pins.get(&node);
            match self
                .inner
                .admission
                .revoke_node(node, certs, crate::runtime::now_ms())
            {
                Ok(()) => tracing::warn!(
                    peer = %node.short(),
                    "node forgotten: its certificate is revoked on every member"
                ),
                Err(e) => tracing::warn!(peer = %node.short(), "cannot revoke: {e}"),
            }
            link::drop_link(&self.inner, &node);
        }
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

    /// `CONFIG SET cluster-node-timeout`: the failure detector's timing
    /// (probe period, suspicion time, announces to down members) follows
    /// the new timeout from now on; what it knows of the members is kept.
    pub fn set_node_timeout(&self, timeout: Duration) {
        let timeout = timeout.max(MIN_NODE_TIMEOUT);
        self.inner
            .node_timeout_ms
            .store(timeout.as_millis() as u64, Ordering::Relaxed);
        let _ = self.inner.cmds.send(membership::Cmd::NodeTimeout(timeout));
    }

    /// Waits (at most `at_most`) until the peers saved by an earlier run
    /// are up again: Disque knows its peers from its nodes file as it
    /// starts, so a restarted node's first adds find them. Returns at once
    /// without saved peers.
    pub async fn await_rejoin(&self, at_most: Duration) {
        let want = membership::saved_peer_count(&self.inner);
        if want == 0 {
            return;
        }
        let deadline = tokio::time::Instant::now() + at_most;
        while tokio::time::Instant::now() < deadline {
            let up = self.inner.table.read().map(|t| t.up().len()).unwrap_or(0);
            if up >= want {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The node timeout in force.
    pub fn node_timeout(&self) -> Duration {
        self.inner.node_timeout()
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

    /// Where this node's RESP and HTTP doors listen, once they are bound:
    /// its adverts carry them from then on (the first call counts).
    pub fn set_doors(&self, resp: SocketAddr, http: Option<SocketAddr>) {
        let _ = self.inner.doors.set((resp, http));
    }

    /// This node's RESP address, once [`Cluster::set_doors`] was called.
    pub fn resp_addr(&self) -> Option<SocketAddr> {
        self.inner.doors.get().map(|(resp, _)| *resp)
    }

    /// This node's own capacity advert (the driver refreshes it); the
    /// cluster layer adds the leaving flag, the version and the doors.
    pub fn set_advert(&self, mut a: Advert) {
        a.leaving = self.leaving();
        a.version = wasque_sdk::VERSION.to_string();
        if let Some((resp, http)) = self.inner.doors.get() {
            a.resp_addr = Some(*resp);
            a.http_addr = *http;
        }
        self.inner
            .announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .merge_into(&mut a.module_hashes, std::time::Instant::now());
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

    /// The trust mode: `ca` or `loopback`.
    pub fn trust_mode(&self) -> &'static str {
        if self.inner.ca_mode() {
            "ca"
        } else {
            "loopback"
        }
    }

    /// `CLUSTER INIT` (`wasque cluster init`): makes this node the holder of
    /// a new cluster CA and switches it to `ca` trust mode at once; returns
    /// the join token for other nodes.
    pub fn init_ca(&self) -> Result<String, ClusterError> {
        let inner = &self.inner;
        let made = ca::init(&inner.cfg.tls_dir, &inner.cfg.me.to_string())
            .map_err(|e| ClusterError::Refused(e.to_string()))?;
        let (Some(secret), Some(token)) = (made.init_secret.clone(), made.token()) else {
            return Err(ClusterError::Refused(
                "no join secret on this node: make a token with CLUSTER TOKEN CREATE".into(),
            ));
        };
        let now = crate::runtime::now_ms();
        if inner.admission.tokens().is_empty() {
            inner
                .admission
                .add_token(&secret, now, 0)
                .map_err(ClusterError::Refused)?;
        }
        if let Err(why) = inner.admission.check_token(&secret, now) {
            return Err(ClusterError::Refused(format!(
                "the first join token no longer admits ({}): make one with CLUSTER TOKEN CREATE (wasque cluster token create)",
                why.trim_start_matches("join refused: ")
            )));
        }
        let tls = server_tls(&inner.own_chain, &inner.own_key, Some(&made))
            .map_err(|e| ClusterError::Refused(e.to_string()))?;
        let server = inner
            .quic_tuning
            .server_config(tls)
            .map_err(|e| ClusterError::Refused(e.to_string()))?;
        let dial = dial_config(&inner.own_chain, &inner.own_key, Some(&made))
            .map_err(|e| ClusterError::Refused(e.to_string()))?;
        inner.endpoint.set_server_config(Some(server));
        if let Ok(mut d) = inner.dial.write() {
            *d = dial;
        }
        if let Ok(mut c) = inner.ca.write() {
            *c = Some(made);
        }
        inner.ca_mode.store(true, Ordering::Relaxed);
        inner
            .links
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        tracing::info!("cluster CA made: peers now need a certificate from it (ca trust mode)");
        Ok(token)
    }

    /// `CLUSTER TOKEN CREATE [TTL secs]`: a new join token, valid for
    /// `ttl` (or until revoked); every member learns it.
    pub fn create_token(&self, ttl: Option<Duration>) -> Result<String, ClusterError> {
        let ca = self.ca_or_refuse()?;
        let ttl_ms = ttl.map(|t| t.as_millis().min(u64::MAX as u128) as u64);
        let (secret, _) = self
            .inner
            .admission
            .create_token(crate::runtime::now_ms(), ttl_ms)
            .map_err(ClusterError::Refused)?;
        Ok(ca.token_for(&secret))
    }

    /// `CLUSTER TOKEN REVOKE id|ALL`: how many tokens were revoked.
    pub fn revoke_token(&self, id: &str) -> Result<usize, ClusterError> {
        self.ca_or_refuse()?;
        self.inner
            .admission
            .revoke_token(id, crate::runtime::now_ms())
            .map_err(ClusterError::Refused)
    }

    /// The admission set: join tokens and forgotten nodes.
    pub fn admission(&self) -> &admission::Admission {
        &self.inner.admission
    }

    fn ca_or_refuse(&self) -> Result<ca::ClusterCa, ClusterError> {
        self.inner
            .ca
            .read()
            .ok()
            .and_then(|c| c.clone())
            .ok_or_else(|| {
                ClusterError::Refused(
                "join tokens are for ca trust mode: run CLUSTER INIT (wasque cluster init) first"
                    .into(),
            )
            })
    }

    /// Whether this member holds the cluster CA key (it can admit nodes).
    pub fn can_admit(&self) -> bool {
        self.inner.can_admit()
    }

    /// Serves a join request (a connection that negotiated the join ALPN).
    pub async fn serve_join(&self, conn: quinn::Connection) {
        inbound::serve_join(self.inner.clone(), conn).await
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

    /// Changes whenever a member's state changes (up, suspect, down,
    /// leaving, forgotten): the HTTP feed sends its view at once instead of
    /// at its next tick.
    pub fn watch_members(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.members.subscribe()
    }

    /// Every known peer.
    pub fn peers(&self) -> Vec<PeerView> {
        self.inner
            .table
            .read()
            .map(|t| t.view())
            .unwrap_or_default()
    }

    /// Tells every live peer now that this node holds `hash` (an upload),
    /// rather than at the next advert: a job naming it may be added on a
    /// peer the moment the upload's reply is out. Sent before any name
    /// for it ([`Cluster::push_names`]) on the same links, so a peer that
    /// knows the name knows a holder.
    pub fn announce_module(&self, hash: crate::job::ModuleHash) {
        self.inner
            .announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .add(hash, std::time::Instant::now());
        if let Ok(mut mine) = self.inner.advert.write()
            && !mine.module_hashes.contains(&hash)
        {
            mine.module_hashes.push(hash);
        }
        membership::send_advert(&self.inner);
    }

    /// A module is being removed here: no longer kept in the advert for
    /// having been announced.
    pub fn forget_announced(&self, hash: &crate::job::ModuleHash) {
        self.inner
            .announced
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .forget(hash);
    }

    /// Sends the module name table to every live peer now (a name made or
    /// removed), rather than at their next advert.
    pub fn push_names(&self) {
        let records = self.inner.cfg.names.records();
        for p in self.peers().into_iter().filter(|p| p.up) {
            link::send(
                &self.inner,
                p.node,
                link::Out::Frame(wire::Frame::ModuleNames(records.clone())),
            );
        }
    }

    /// Asks every known peer a question about its modules: a live one
    /// (up, even if leaving) on a stream of its own, all in parallel; a
    /// peer that does not answer within `timeout`, or that the membership
    /// has declared down (not asked), is named with why.
    pub async fn ask_peers(
        &self,
        ask: wire::ModuleAsk,
        timeout: Duration,
    ) -> Vec<(NodeName, Result<wire::ModuleAnswer, String>)> {
        let asks = self.peers().into_iter().map(|p| {
            let ask = ask.clone();
            async move {
                if !p.up {
                    return (p.node, Err(format!("node {} is down", p.node.short())));
                }
                (p.node, self.ask_peer(p.node, ask, timeout).await)
            }
        });
        futures_util::future::join_all(asks).await
    }

    /// One module question to one peer.
    pub async fn ask_peer(
        &self,
        node: NodeName,
        ask: wire::ModuleAsk,
        timeout: Duration,
    ) -> Result<wire::ModuleAnswer, String> {
        let addr = self
            .inner
            .table
            .read()
            .ok()
            .and_then(|t| t.addr_of(&node))
            .ok_or_else(|| format!("node {} is unknown", node.short()))?;
        if self.inner.is_cut(&node) {
            return Err(format!(
                "node {} is cut off (DEBUG PARTITION)",
                node.short()
            ));
        }
        let asked = link::request(&self.inner, addr, Some(node), wire::Frame::ModuleAsk(ask));
        match tokio::time::timeout(timeout, asked).await {
            Err(_) => Err(format!(
                "node {} did not answer within {} ms",
                node.short(),
                timeout.as_millis()
            )),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(wire::Frame::ModuleAnswer(a))) => Ok(a),
            Ok(Ok(other)) => Err(format!(
                "node {} answered a module question with {other:?}",
                node.short()
            )),
        }
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

/// The shortest node timeout the failure detector runs with (a smaller
/// `cluster-node-timeout` is raised to it, at start as at `CONFIG SET`).
pub const MIN_NODE_TIMEOUT: Duration = Duration::from_millis(100);

impl Inner {
    fn node_timeout(&self) -> Duration {
        Duration::from_millis(self.node_timeout_ms.load(Ordering::Relaxed))
    }

    fn ca_mode(&self) -> bool {
        self.ca_mode.load(Ordering::Relaxed)
    }

    fn dial_config(&self) -> quinn::ClientConfig {
        self.dial
            .read()
            .map(|d| d.clone())
            .unwrap_or_else(|p| p.into_inner().clone())
    }

    /// Whether frames from `node` are dropped: a test partition, or a
    /// node forgotten (revoked) in ca mode.
    fn is_cut(&self, node: &NodeName) -> bool {
        self.cut.read().is_ok_and(|c| c.contains(node)) || self.admission.is_revoked_node(node)
    }

    fn can_admit(&self) -> bool {
        self.ca
            .read()
            .is_ok_and(|c| c.as_ref().is_some_and(|c| c.signer.is_some()))
    }

    /// Whether a peer that says it is `node`, with certificate `fp`, may
    /// speak: not forgotten, and (loopback mode's pins, kept in ca mode
    /// too) the certificate first seen for that node.
    fn admit(&self, node: NodeName, fp: trust::Fingerprint) -> Result<(), String> {
        if self.admission.is_revoked_node(&node) || self.admission.is_revoked_cert(&fp) {
            return Err(format!(
                "node {} was forgotten (CLUSTER FORGET): its certificate is revoked",
                node.short()
            ));
        }
        self.pins.check(node, fp)
    }

    /// Takes a peer's admission set; nodes it newly forgot are cut off
    /// here too (with the certificate this node pinned for them).
    fn take_admission(&self, from: NodeName, set: admission::AdmissionSet) {
        let merged = self.admission.merge(set, crate::runtime::now_ms());
        for node in merged.revoked {
            if node == self.cfg.me {
                tracing::error!(
                    peer = %from.short(),
                    "this node was forgotten by the cluster (CLUSTER FORGET): its peers refuse it"
                );
                continue;
            }
            let certs = self.pins.get(&node);
            if let Err(e) = self
                .admission
                .revoke_node(node, certs, crate::runtime::now_ms())
            {
                tracing::warn!(peer = %node.short(), "cannot record the revocation: {e}");
            }
            tracing::warn!(peer = %node.short(), by = %from.short(), "node forgotten by the cluster: refused from now on");
            if let Ok(mut t) = self.table.write() {
                t.forget(&node);
            }
            link::drop_link(self, &node);
            let _ = self.cmds.send(membership::Cmd::Forget(node));
            self.publish_peers();
        }
        if merged.tokens > 0 {
            tracing::info!(peer = %from.short(), tokens = merged.tokens, "join tokens taken from a peer");
        }
    }

    /// Keeps the CA key a member sent, once it is checked to be this
    /// cluster's: from then on this node admits joiners too.
    fn take_ca_key(&self, from: NodeName, key_pem: String) {
        let Some(mut ca) = self.ca.read().ok().and_then(|c| c.clone()) else {
            return;
        };
        if ca.signer.is_some() {
            return;
        }
        if let Err(e) = ca::check_ca_key(&ca, &key_pem) {
            tracing::warn!(peer = %from.short(), "CA key refused: {e}");
            return;
        }
        if let Err(e) = ca::save_ca_key(&self.cfg.tls_dir, &key_pem) {
            tracing::warn!("cannot keep the cluster CA key: {e}");
            return;
        }
        ca.signer = Some(key_pem);
        if let Ok(mut c) = self.ca.write() {
            *c = Some(ca);
        }
        tracing::info!(peer = %from.short(), "cluster CA key received: this node admits joiners too");
    }

    fn publish_peers(&self) {
        let targets = self.table.read().map(|t| t.targets()).unwrap_or_default();
        let _ = self.events.send(PeerEvent::Peers(targets));
        self.members_changed();
    }

    fn members_changed(&self) {
        self.members.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Transport settings of the node's QUIC endpoint, kept so the server
/// config can be rebuilt when the trust mode changes.
#[derive(Clone, Copy, Debug)]
pub struct QuicTuning {
    pub idle_timeout: Duration,
}

impl QuicTuning {
    /// The endpoint's server config around `tls`.
    pub fn server_config(
        &self,
        tls: rustls::ServerConfig,
    ) -> Result<quinn::ServerConfig, crate::net::identity::IdentityError> {
        use crate::net::identity::IdentityError;
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(crypto));
        let mut transport = quinn::TransportConfig::default();
        transport.max_concurrent_bidi_streams(64u32.into());
        // Peers open one message stream per link; clients open none.
        transport.max_concurrent_uni_streams(8u32.into());
        transport.max_idle_timeout(Some(
            quinn::IdleTimeout::try_from(self.idle_timeout)
                .map_err(|e| IdentityError::Tls(e.to_string()))?,
        ));
        transport.stream_receive_window((8u32 << 20).into());
        transport.receive_window((32u32 << 20).into());
        transport.send_window(32 << 20);
        server.transport_config(Arc::new(transport));
        Ok(server)
    }
}

/// The QUIC client config for dialing peers: the peer ALPN and this
/// node's peer certificate as the client certificate (in `ca` mode the
/// cluster one, and the peer must chain to the cluster CA).
pub fn dial_config(
    own_chain: &[rustls::pki_types::CertificateDer<'static>],
    own_key: &rustls::pki_types::PrivateKeyDer<'static>,
    cluster_ca: Option<&ca::ClusterCa>,
) -> Result<quinn::ClientConfig, crate::net::identity::IdentityError> {
    use crate::net::identity::IdentityError;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(|e| IdentityError::Tls(e.to_string()))?;
    let mut tls = match cluster_ca {
        Some(c) => builder
            .with_root_certificates(c.roots())
            .with_client_auth_cert(c.chain.clone(), c.key.clone_key()),
        None => builder
            .dangerous()
            .with_custom_certificate_verifier(trust::AnyServerCert::new())
            .with_client_auth_cert(own_chain.to_vec(), own_key.clone_key()),
    }
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
    // Links carry data one way and acknowledgements the other: asking the
    // peer to acknowledge every 32nd packet, or after 2 ms, instead of
    // every 2nd cut the datagrams of a replicated add by a quarter.
    let mut acks = quinn::AckFrequencyConfig::default();
    acks.ack_eliciting_threshold(31u32.into())
        .max_ack_delay(Some(Duration::from_millis(2)));
    transport.ack_frequency_config(Some(acks));
    cfg.transport_config(Arc::new(transport));
    Ok(cfg)
}

/// Picks the certificate by ALPN: the node's own for clients, the cluster
/// one for peers and joiners (`ca` mode).
#[derive(Debug)]
struct ByAlpn {
    client: Arc<rustls::sign::CertifiedKey>,
    peer: Arc<rustls::sign::CertifiedKey>,
}

impl rustls::server::ResolvesServerCert for ByAlpn {
    fn resolve(
        &self,
        hello: rustls::server::ClientHello<'_>,
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        let peer = hello
            .alpn()
            .is_some_and(|mut a| a.any(|p| p == wasque_sdk::PEER_ALPN || p == ca::JOIN_ALPN));
        Some(if peer {
            self.peer.clone()
        } else {
            self.client.clone()
        })
    }
}

/// The server-side TLS of the node's endpoint: client, peer and join
/// ALPNs; a certificate asked of (not required from) every connection,
/// checked against the cluster CA in `ca` mode.
pub fn server_tls(
    own_chain: &[rustls::pki_types::CertificateDer<'static>],
    own_key: &rustls::pki_types::PrivateKeyDer<'static>,
    cluster_ca: Option<&ca::ClusterCa>,
) -> Result<rustls::ServerConfig, crate::net::identity::IdentityError> {
    use crate::net::identity::IdentityError;
    let tls_err = |e: rustls::Error| IdentityError::Tls(e.to_string());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .map_err(tls_err)?;
    let mut cfg = match cluster_ca {
        None => builder
            .with_client_cert_verifier(trust::AnyClientCert::new())
            .with_single_cert(own_chain.to_vec(), own_key.clone_key())
            .map_err(tls_err)?,
        Some(c) => {
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(c.roots()),
                provider.clone(),
            )
            .allow_unauthenticated()
            .build()
            .map_err(|e| IdentityError::Tls(e.to_string()))?;
            let client = rustls::sign::CertifiedKey::from_der(
                own_chain.to_vec(),
                own_key.clone_key(),
                &provider,
            )
            .map_err(tls_err)?;
            let peer =
                rustls::sign::CertifiedKey::from_der(c.chain.clone(), c.key.clone_key(), &provider)
                    .map_err(tls_err)?;
            builder
                .with_client_cert_verifier(verifier)
                .with_cert_resolver(Arc::new(ByAlpn {
                    client: Arc::new(client),
                    peer: Arc::new(peer),
                }))
        }
    };
    cfg.alpn_protocols = vec![
        wasque_sdk::CLIENT_ALPN.to_vec(),
        wasque_sdk::PEER_ALPN.to_vec(),
        ca::JOIN_ALPN.to_vec(),
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
