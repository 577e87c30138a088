//! A client of a whole cluster: it starts from one or more seed addresses,
//! learns every node from them (`Request::Nodes`), sends each call to a
//! node picked by a rule, and when that node dies or leaves mid-stream it
//! carries the call over to another node without the caller doing
//! anything.
//!
//! Trust: the caller trusts the seeds' CAs (`ca_pem`) for every node. Every
//! node answers `Nodes` with the CA each peer's clients trust, learned from
//! that peer over the authenticated peer link, so the client extends its
//! trust to what a node it already trusts vouches for, and to nothing
//! else: one trust store per node. A CA vouched for node B is trusted for
//! connections to B's address only, never for any other node, so a node
//! (or whoever holds a vouched-for CA's key) cannot stand in for another.
//!
//! At-least-once, as the cluster itself: a call whose node died after it
//! was sent may have been carried out there before the failover; an add
//! sent again may then exist twice (both run, both are acknowledged or
//! expire). Reads (`show`, `wait`) and acks are safe to repeat.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::client::resolve;
use crate::proto::{
    self, AddJob, ClusterNode, ErrorCode, JobId, JobStatus, ModuleHash, ModuleInfo, NodeInfo,
    NodeState, Request, Response,
};
use crate::{Client, ClientConfig, ClientError};

/// How a [`ClusterClient`] picks the node for a call.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Pick {
    /// Each call goes to the next live node in turn.
    #[default]
    RoundRobin,
    /// Each call goes to the live node with the lowest load (busy
    /// executor slots and ready jobs per slot, from the nodes' adverts,
    /// plus this client's calls in flight there).
    LeastLoaded,
    /// Every call goes to the first seed while it answers (a client with
    /// a node of its own, say); other nodes only when it fails.
    First,
}

impl std::str::FromStr for Pick {
    type Err = String;
    fn from_str(s: &str) -> Result<Pick, String> {
        match s {
            "round-robin" | "rr" => Ok(Pick::RoundRobin),
            "least-loaded" | "ll" => Ok(Pick::LeastLoaded),
            "first" => Ok(Pick::First),
            _ => Err(format!(
                "unknown pick rule {s:?}: expected round-robin, least-loaded or first"
            )),
        }
    }
}

/// Where a [`ClusterClient`] starts and how it behaves.
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    /// Seed addresses (`HOST:PORT`); any one that answers is enough.
    pub seeds: Vec<String>,
    /// PEM of the CA(s) that signed the seeds' certificates.
    pub ca_pem: Vec<u8>,
    /// Secret for nodes that require one (`requirepass`).
    pub token: Option<String>,
    pub pick: Pick,
    /// Bound on one frame, both ways.
    pub max_frame: usize,
    /// How long to wait for one connection.
    pub connect_timeout: Duration,
    /// How long one call may go on failing over before it gives up.
    pub failover_deadline: Duration,
    /// How often the node list is refreshed (in the background).
    pub refresh_every: Duration,
    /// How long a node that failed is passed over.
    pub avoid_for: Duration,
}

impl ClusterConfig {
    /// Seeds, trusting the CA PEM given.
    pub fn new(seeds: Vec<String>, ca_pem: Vec<u8>) -> ClusterConfig {
        ClusterConfig {
            seeds,
            ca_pem,
            token: None,
            pick: Pick::default(),
            max_frame: proto::DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(2),
            failover_deadline: Duration::from_secs(30),
            refresh_every: Duration::from_secs(2),
            avoid_for: Duration::from_secs(10),
        }
    }
}

/// Most nodes [`ClusterClient::explain`] asks about one job: the holder
/// first asked, the node it lent the job to, and one more move.
pub const EXPLAIN_HOPS: usize = 3;

/// A node the client knows of.
struct Slot {
    addr: SocketAddr,
    /// As the cluster last described it (`None`: a seed not yet heard of).
    info: Option<ClusterNode>,
    conn: Arc<tokio::sync::Mutex<Option<Client>>>,
    avoid_until: Option<Instant>,
    in_flight: Arc<AtomicUsize>,
    /// The id the node gave when this client connected.
    node_id: Option<String>,
    /// The CA (PEM) the cluster vouched for this node, trusted for this
    /// node alone (besides the seeds' CAs).
    vouched: Option<String>,
}

struct State {
    slots: Vec<Slot>,
    refreshed_at: Option<Instant>,
    refreshing: bool,
}

/// A client of a cluster, with discovery and failover. Cheap to clone;
/// clones share connections and the node list.
#[derive(Clone)]
pub struct ClusterClient {
    shared: Arc<Shared>,
}

struct Shared {
    cfg: ClusterConfig,
    state: std::sync::Mutex<State>,
    turn: AtomicUsize,
    failovers: AtomicU64,
    /// Which node each module was uploaded to: until the others' adverts
    /// list it, an add naming it is sent there.
    uploaded: std::sync::Mutex<std::collections::HashMap<ModuleHash, String>>,
}

/// The up node with the highest hash of its id, `queue` and `key`.
fn key_home_of<'a>(
    nodes: impl Iterator<Item = &'a ClusterNode>,
    queue: &str,
    key: &str,
) -> Option<String> {
    nodes
        .filter(|n| n.state == NodeState::Up)
        .max_by_key(|n| fnv1a(&[n.id.as_bytes(), queue.as_bytes(), key.as_bytes()]))
        .map(|n| n.id.clone())
}

/// FNV-1a (64 bits) over `parts`, each followed by a zero byte: a hash
/// every client computes alike, for [`ClusterClient::key_home`].
fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.iter().chain(&[0u8]) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    h
}

fn lock(s: &Shared) -> std::sync::MutexGuard<'_, State> {
    s.state
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Whether an error means "try another node".
fn moves_on(e: &ClientError) -> bool {
    e.is_unreachable() || matches!(e, ClientError::Node(w) if w.code == ErrorCode::Leaving)
}

/// The most attempts one call makes, whatever the deadline.
const MAX_ATTEMPTS: usize = 12;

impl ClusterClient {
    /// Connects to the first seed that answers and learns the cluster.
    pub async fn connect(cfg: ClusterConfig) -> Result<ClusterClient, ClientError> {
        if cfg.seeds.is_empty() {
            return Err(ClientError::Connect("no seed address given".into()));
        }
        let mut slots = Vec::new();
        let mut bad = Vec::new();
        for seed in &cfg.seeds {
            match resolve(seed) {
                Ok(addr) if !slots.iter().any(|s: &Slot| s.addr == addr) => {
                    slots.push(Slot::new(addr, None))
                }
                Ok(_) => {}
                Err(e) => bad.push(e.to_string()),
            }
        }
        if slots.is_empty() {
            return Err(ClientError::Connect(bad.join("; ")));
        }
        let shared = Arc::new(Shared {
            cfg,
            state: std::sync::Mutex::new(State {
                slots,
                refreshed_at: None,
                refreshing: false,
            }),
            turn: AtomicUsize::new(0),
            failovers: AtomicU64::new(0),
            uploaded: Default::default(),
        });
        let client = ClusterClient { shared };
        // Learn the cluster now, so the first calls already spread.
        client.refresh().await?;
        Ok(client)
    }

    /// The nodes as last learned.
    pub fn known_nodes(&self) -> Vec<ClusterNode> {
        lock(&self.shared)
            .slots
            .iter()
            .filter_map(|s| s.info.clone())
            .collect()
    }

    /// How many times a call moved to another node.
    pub fn failovers(&self) -> u64 {
        self.shared.failovers.load(Ordering::Relaxed)
    }

    /// Asks a node for the cluster's node list and takes it in.
    pub async fn refresh(&self) -> Result<Vec<ClusterNode>, ClientError> {
        let nodes = self
            .with_failover(None, |c| async move { c.nodes().await })
            .await?;
        self.take_in(&nodes);
        Ok(nodes)
    }

    fn take_in(&self, nodes: &[ClusterNode]) {
        let mut st = lock(&self.shared);
        for n in nodes {
            let Ok(addr) = n.addr.parse::<SocketAddr>() else {
                continue;
            };
            // A node is known by its id first: the address it announces
            // may differ from the seed address it was reached at.
            let by_id = st.slots.iter().position(|s| {
                s.node_id.as_deref() == Some(n.id.as_str())
                    || s.info.as_ref().is_some_and(|i| i.id == n.id)
            });
            let by_addr = || st.slots.iter().position(|s| s.addr == addr);
            match by_id.or_else(by_addr).map(|i| &mut st.slots[i]) {
                Some(s) => {
                    s.info = Some(n.clone());
                    if n.ca_pem.is_some() {
                        s.vouched = n.ca_pem.clone();
                    }
                }
                None => st.slots.push(Slot::new(addr, Some(n.clone()))),
            }
        }
        st.refreshed_at = Some(Instant::now());
        st.refreshing = false;
    }

    /// Refreshes the node list in the background when it is stale.
    fn refresh_if_stale(&self) {
        {
            let mut st = lock(&self.shared);
            let fresh = st
                .refreshed_at
                .is_some_and(|t| t.elapsed() < self.shared.cfg.refresh_every);
            if fresh || st.refreshing {
                return;
            }
            st.refreshing = true;
        }
        let me = self.clone();
        tokio::spawn(async move {
            if me.refresh().await.is_err() {
                let mut st = lock(&me.shared);
                st.refreshing = false;
                st.refreshed_at = Some(Instant::now());
            }
        });
    }

    /// Slots in the order a call should try them: by the pick rule among
    /// nodes that take work, then the ones passed over (as a last resort).
    fn order(&self, prefer: Option<&str>) -> Vec<usize> {
        let st = lock(&self.shared);
        let now = Instant::now();
        let usable = |s: &Slot| {
            s.avoid_until.is_none_or(|t| t <= now)
                && s.info.as_ref().is_none_or(|i| i.state == NodeState::Up)
        };
        let mut good: Vec<usize> = (0..st.slots.len())
            .filter(|&i| usable(&st.slots[i]))
            .collect();
        match self.shared.cfg.pick {
            Pick::RoundRobin if !good.is_empty() => {
                let k = self.shared.turn.fetch_add(1, Ordering::Relaxed) % good.len();
                good.rotate_left(k);
            }
            Pick::RoundRobin | Pick::First => {}
            Pick::LeastLoaded => {
                let load = |i: usize| {
                    let s = &st.slots[i];
                    let mine = s.in_flight.load(Ordering::Relaxed) as f64;
                    match &s.info {
                        Some(n) => n.load() + mine / n.exec_slots.max(1) as f64,
                        None => mine,
                    }
                };
                good.sort_by(|a, b| load(*a).total_cmp(&load(*b)));
            }
        }
        if let Some(p) = prefer
            && let Some(k) = good.iter().position(|&i| {
                st.slots[i]
                    .info
                    .as_ref()
                    .is_some_and(|n| n.id.starts_with(p))
            })
        {
            let i = good.remove(k);
            good.insert(0, i);
        }
        let rest = (0..st.slots.len()).filter(|i| !good.contains(i));
        // Nodes marked down come last of all.
        let (down, avoided): (Vec<usize>, Vec<usize>) = rest.partition(|&i| {
            st.slots[i]
                .info
                .as_ref()
                .is_some_and(|n| n.state == NodeState::Down)
        });
        good.extend(avoided);
        good.extend(down);
        good
    }

    /// The slot's connection, made if there is none.
    async fn connection(&self, i: usize) -> Result<(Client, Arc<AtomicUsize>), ClientError> {
        let (conn, addr, trusted, in_flight) = {
            let st = lock(&self.shared);
            let s = &st.slots[i];
            (
                s.conn.clone(),
                s.addr,
                trust_store(&self.shared.cfg.ca_pem, s.vouched.as_deref()),
                s.in_flight.clone(),
            )
        };
        let mut guard = conn.lock().await;
        if let Some(c) = guard.as_ref()
            && !c.is_closed()
        {
            return Ok((c.clone(), in_flight));
        }
        let cfg = ClientConfig {
            addr,
            ca_pem: trusted,
            server_name: addr.ip().to_string(),
            token: self.shared.cfg.token.clone(),
            max_frame: self.shared.cfg.max_frame,
            connect_timeout: self.shared.cfg.connect_timeout,
        };
        let c = Client::connect(cfg).await?;
        *guard = Some(c.clone());
        drop(guard);
        if let Some(s) = lock(&self.shared).slots.get_mut(i) {
            s.node_id = Some(c.node_id().to_string());
        }
        Ok((c, in_flight))
    }

    fn avoid(&self, i: usize) {
        let mut st = lock(&self.shared);
        let until = Instant::now() + self.shared.cfg.avoid_for;
        if let Some(s) = st.slots.get_mut(i) {
            s.avoid_until = Some(until);
        }
    }

    /// Runs `call` on a node picked by the rule (`prefer`: a node-id
    /// prefix to try first), moving to the next node when the node cannot
    /// be reached, dies mid-call or is leaving.
    pub async fn with_failover<T, F, Fut>(
        &self,
        prefer: Option<&str>,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        self.attempt(prefer, false, call).await
    }

    /// The failover loop; with `pass_nojob`, a node that answers `NOJOB`
    /// hands the call to the next node (until every node said so).
    async fn attempt<T, F, Fut>(
        &self,
        prefer: Option<&str>,
        pass_nojob: bool,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let mut no_job: Vec<usize> = Vec::new();
        let deadline = Instant::now() + self.shared.cfg.failover_deadline;
        let mut last: Option<ClientError> = None;
        let mut attempt = 0;
        while attempt < MAX_ATTEMPTS && Instant::now() < deadline {
            let order: Vec<usize> = self
                .order(prefer)
                .into_iter()
                .filter(|i| !no_job.contains(i))
                .collect();
            if order.is_empty() {
                break;
            }
            for i in order {
                if attempt >= MAX_ATTEMPTS || Instant::now() >= deadline {
                    break;
                }
                attempt += 1;
                if attempt > 1 {
                    self.shared.failovers.fetch_add(1, Ordering::Relaxed);
                }
                let (client, in_flight) = match self.connection(i).await {
                    Ok(c) => c,
                    Err(e) => {
                        self.avoid(i);
                        last = Some(e);
                        continue;
                    }
                };
                in_flight.fetch_add(1, Ordering::Relaxed);
                let r = call(client).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
                match r {
                    Err(ClientError::Node(w)) if pass_nojob && w.code == ErrorCode::NoJob => {
                        no_job.push(i);
                        last = Some(ClientError::Node(w));
                    }
                    Err(e) if moves_on(&e) => {
                        tracing::debug!("moving on from a node: {e}");
                        self.avoid(i);
                        last = Some(e);
                        // The survivors know more now: ask them soon.
                        lock(&self.shared).refreshed_at = None;
                    }
                    r => {
                        if attempt > 1 || prefer.is_none() {
                            self.refresh_if_stale();
                        }
                        return r;
                    }
                }
            }
            if !no_job.is_empty() && self.order(prefer).iter().all(|i| no_job.contains(i)) {
                break;
            }
            // Every node failed this round: give the cluster a moment.
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(match last {
            Some(ClientError::Node(w)) => ClientError::Node(w),
            Some(e) => ClientError::Connect(format!(
                "no node of the cluster answered (last: {e}); tried {}",
                self.addresses()
            )),
            None => ClientError::Connect(format!("no node to try; known: {}", self.addresses())),
        })
    }

    fn addresses(&self) -> String {
        lock(&self.shared)
            .slots
            .iter()
            .map(|s| s.addr.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Like [`with_failover`](Self::with_failover) for a job id: the node
    /// that created the job is asked first, and a node that does not hold
    /// it (`NOJOB`) passes the call on to the next one.
    async fn for_job<T, F, Fut>(&self, id: JobId, call: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let prefix = format!("{:06x}", id.node_prefix());
        self.attempt(Some(&prefix), true, call).await
    }

    /// Sends one request with failover (see the module's note on adds).
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let (module, home) = match &request {
            Request::AddJob(a) => (a.module, self.key_home(a)),
            _ => (None, None),
        };
        self.adding(module, home, |c| {
            let r = request.clone();
            async move { c.call(r).await }
        })
        .await
    }

    /// The node an add with an idempotency key goes to first: the live
    /// node with the highest hash of its id, the queue and the key
    /// (rendezvous), so every retry of the add, from any client that knows
    /// the same nodes, reaches the node that remembers the key while it
    /// is up. `None` without a key, or before the cluster was described.
    fn key_home(&self, a: &AddJob) -> Option<String> {
        let key = a.idempotency_key.as_deref()?;
        // A call with a preferred node does not refresh the node list
        // after it (job-addressed calls know where to go): keyed adds do.
        self.refresh_if_stale();
        let st = lock(&self.shared);
        key_home_of(
            st.slots.iter().filter_map(|s| s.info.as_ref()),
            &a.queue,
            key,
        )
    }

    /// An add: to a node picked by the rule (or `home`, an idempotency
    /// key's node, first), or, if that node does not know the job's
    /// module yet (`NOMODULE`: the module was uploaded a moment ago,
    /// before adverts told the others), to the node it was uploaded to.
    async fn adding<T, F, Fut>(
        &self,
        module: Option<ModuleHash>,
        home: Option<String>,
        call: F,
    ) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        match self.with_failover(home.as_deref(), &call).await {
            Err(ClientError::Node(w)) if w.code == ErrorCode::NoModule => {
                let holder = module.and_then(|m| self.uploaded().get(&m).cloned());
                match holder {
                    Some(node) => self.with_failover(Some(&node), &call).await,
                    None => Err(ClientError::Node(w)),
                }
            }
            r => r,
        }
    }

    fn uploaded(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<ModuleHash, String>> {
        self.shared
            .uploaded
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Uploads a module to one node; the others fetch it by hash when a
    /// job needs it there.
    pub async fn put_module(&self, bytes: impl AsRef<[u8]>) -> Result<ModuleInfo, ClientError> {
        self.put_module_with(bytes, proto::PutOptions::default())
            .await
    }

    /// Uploads a module with options (a name and version; copies on peers
    /// before the answer).
    pub async fn put_module_with(
        &self,
        bytes: impl AsRef<[u8]>,
        opts: proto::PutOptions,
    ) -> Result<ModuleInfo, ClientError> {
        let bytes = bytes.as_ref();
        let (info, node) = self
            .with_failover(None, |c| {
                let opts = opts.clone();
                async move {
                    let info = c.put_module_with(bytes, opts).await?;
                    Ok((info, c.node_id().to_string()))
                }
            })
            .await?;
        self.uploaded().insert(info.hash, node);
        Ok(info)
    }

    /// The cluster's modules, with their holders (asked of one node, which
    /// asks the others).
    pub async fn list_modules(&self) -> Result<proto::ModuleCatalogue, ClientError> {
        self.with_failover(None, |c| async move { c.list_modules().await })
            .await
    }

    pub async fn stat_module(&self, hash: ModuleHash) -> Result<ModuleInfo, ClientError> {
        self.with_failover(None, |c| async move { c.stat_module(hash).await })
            .await
    }

    pub async fn delete_module(&self, hash: ModuleHash) -> Result<(), ClientError> {
        self.with_failover(None, |c| async move { c.delete_module(hash).await })
            .await
    }

    /// Adds a job on a node picked by the rule.
    pub async fn add_job(&self, job: AddJob) -> Result<JobId, ClientError> {
        self.adding(job.module, self.key_home(&job), |c| {
            let job = job.clone();
            async move { c.add_job(job).await }
        })
        .await
    }

    /// Adds a job, waits for its result and acknowledges it (see
    /// [`Client::run`]).
    pub async fn run(&self, job: AddJob, wait_ms: u64) -> Result<JobStatus, ClientError> {
        self.adding(job.module, self.key_home(&job), |c| {
            let job = job.clone();
            async move { c.run(job, wait_ms).await }
        })
        .await
    }

    pub async fn show(&self, id: JobId) -> Result<JobStatus, ClientError> {
        self.for_job(id, |c| async move { c.show(id).await }).await
    }

    /// Why the job is where it is: the answer of the first node holding
    /// a copy (the creating node first, `NOJOB` passing on as for
    /// `show`), then, while an answer says another node has the job in
    /// hand (`lent`, `held-elsewhere`), that node's own answer: at most
    /// [`EXPLAIN_HOPS`] answers, each node once. A node pointed at that
    /// cannot be reached or no longer holds the job ends the chain; the
    /// answers so far stand.
    pub async fn explain(
        &self,
        id: JobId,
        key: Option<&str>,
    ) -> Result<Vec<proto::Explain>, ClientError> {
        let key = key.map(str::to_string);
        let ask = |c: Client| {
            let key = key.clone();
            async move { c.explain(id, key.as_deref()).await }
        };
        let first = self.for_job(id, ask).await?;
        let mut chain = vec![first];
        while chain.len() < EXPLAIN_HOPS {
            let Some(next) = chain.last().and_then(|x| x.elsewhere()) else {
                break;
            };
            if chain.iter().any(|x| x.node == next) {
                break;
            }
            let next = next.to_string();
            match self.on_node(&next, ask).await {
                Ok(x) => chain.push(x),
                Err(e) => {
                    tracing::debug!("explain: node {next} did not answer: {e}");
                    break;
                }
            }
        }
        Ok(chain)
    }

    /// Runs `call` on the node with id `node` only (the node list is
    /// refreshed once if it is not known yet); no failover.
    async fn on_node<T, F, Fut>(&self, node: &str, call: F) -> Result<T, ClientError>
    where
        F: Fn(Client) -> Fut,
        Fut: Future<Output = Result<T, ClientError>>,
    {
        let find = |me: &ClusterClient| {
            lock(&me.shared).slots.iter().position(|s| {
                s.info.as_ref().is_some_and(|i| i.id == node) || s.node_id.as_deref() == Some(node)
            })
        };
        let i = match find(self) {
            Some(i) => i,
            None => {
                self.refresh().await?;
                find(self).ok_or_else(|| {
                    ClientError::Connect(format!("node {node} is not among the known nodes"))
                })?
            }
        };
        let (client, in_flight) = self.connection(i).await?;
        in_flight.fetch_add(1, Ordering::Relaxed);
        let r = call(client).await;
        in_flight.fetch_sub(1, Ordering::Relaxed);
        r
    }

    /// Adds part `index` of a distributed job, at the node that keeps the
    /// parent (see [`Client::add_part`]).
    pub async fn add_part(
        &self,
        parent: JobId,
        index: u32,
        body: Vec<u8>,
    ) -> Result<JobId, ClientError> {
        self.for_job(parent, |c| {
            let body = body.clone();
            async move { c.add_part(parent, index, body).await }
        })
        .await
    }

    pub async fn show_by_key(&self, key: &str, id: JobId) -> Result<JobStatus, ClientError> {
        self.for_job(id, |c| async move { c.show_by_key(key, id).await })
            .await
    }

    /// Waits for a job's result, from any node that holds the job.
    pub async fn wait(&self, id: JobId, timeout_ms: u64) -> Result<Option<JobStatus>, ClientError> {
        self.for_job(id, |c| async move { c.wait(id, timeout_ms).await })
            .await
    }

    /// [`ClusterClient::wait`] for a job added with `asynckey`, given the key.
    pub async fn wait_by_key(
        &self,
        key: &str,
        id: JobId,
        timeout_ms: u64,
    ) -> Result<Option<JobStatus>, ClientError> {
        self.for_job(
            id,
            |c| async move { c.wait_by_key(key, id, timeout_ms).await },
        )
        .await
    }

    /// [`ClusterClient::ack`] carrying an `asynckey`.
    pub async fn ack_by_key(&self, key: &str, ids: Vec<JobId>) -> Result<u64, ClientError> {
        let prefix = ids.first().map(|id| format!("{:06x}", id.node_prefix()));
        self.with_failover(prefix.as_deref(), |c| {
            let ids = ids.clone();
            async move { c.ack_by_key(key, ids).await }
        })
        .await
    }

    /// [`ClusterClient::deljob`] carrying an `asynckey`.
    pub async fn deljob_by_key(&self, key: &str, ids: Vec<JobId>) -> Result<u64, ClientError> {
        let prefix = ids.first().map(|id| format!("{:06x}", id.node_prefix()));
        self.with_failover(prefix.as_deref(), |c| {
            let ids = ids.clone();
            async move { c.deljob_by_key(key, ids).await }
        })
        .await
    }

    /// Acknowledges jobs; the ack reaches every holder from any node.
    pub async fn ack(&self, ids: Vec<JobId>) -> Result<u64, ClientError> {
        let prefix = ids.first().map(|id| format!("{:06x}", id.node_prefix()));
        self.with_failover(prefix.as_deref(), |c| {
            let ids = ids.clone();
            async move { c.ack(ids).await }
        })
        .await
    }

    /// NACK: plain jobs given back, queued again after `delay_ms`.
    pub async fn nack(&self, ids: Vec<JobId>, delay_ms: Option<u64>) -> Result<u64, ClientError> {
        let prefix = ids.first().map(|id| format!("{:06x}", id.node_prefix()));
        self.with_failover(prefix.as_deref(), |c| {
            let ids = ids.clone();
            async move { c.nack(ids, delay_ms).await }
        })
        .await
    }

    /// Cancels jobs through the first node (the creating node first) that
    /// holds them; `NoJob` passes on to the next.
    pub async fn cancel(&self, ids: Vec<JobId>) -> Result<u64, ClientError> {
        let prefix = ids.first().map(|id| format!("{:06x}", id.node_prefix()));
        self.with_failover(prefix.as_deref(), |c| {
            let ids = ids.clone();
            async move { c.cancel(ids).await }
        })
        .await
    }

    /// The dead letters of `queue` held by the node the call reaches
    /// (every holder of a job keeps its dead letter; see README, Dead
    /// letters).
    pub async fn dlq_list(&self, queue: &str, count: u32) -> Result<Vec<JobStatus>, ClientError> {
        self.with_failover(None, |c| async move { c.dlq_list(queue, count).await })
            .await
    }

    /// Queues dead letters of `queue` again (every one when `ids` is empty).
    pub async fn dlq_requeue(&self, queue: &str, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.with_failover(None, |c| {
            let ids = ids.clone();
            async move { c.dlq_requeue(queue, ids).await }
        })
        .await
    }

    /// Forgets every dead letter of `queue`.
    pub async fn dlq_purge(&self, queue: &str) -> Result<u64, ClientError> {
        self.with_failover(None, |c| async move { c.dlq_purge(queue).await })
            .await
    }

    /// Creates a schedule (see [`Client::schedule_add`]); any node will
    /// do: the registry reaches every node with its next advert.
    pub async fn schedule_add(&self, spec: crate::proto::ScheduleSpec) -> Result<(), ClientError> {
        self.with_failover(None, |c| {
            let spec = spec.clone();
            async move { c.schedule_add(spec).await }
        })
        .await
    }

    /// Every schedule this client may see.
    pub async fn schedules(&self) -> Result<Vec<crate::proto::ScheduleInfo>, ClientError> {
        self.with_failover(None, |c| async move { c.schedules().await })
            .await
    }

    /// One schedule, with its recent ticks.
    pub async fn schedule(&self, name: &str) -> Result<crate::proto::ScheduleInfo, ClientError> {
        self.with_failover(None, |c| async move { c.schedule(name).await })
            .await
    }

    /// Removes a schedule on every node.
    pub async fn schedule_remove(&self, name: &str) -> Result<(), ClientError> {
        self.with_failover(None, |c| async move { c.schedule_remove(name).await })
            .await
    }

    pub async fn deljob(&self, ids: Vec<JobId>) -> Result<u64, ClientError> {
        let prefix = ids.first().map(|id| format!("{:06x}", id.node_prefix()));
        self.with_failover(prefix.as_deref(), |c| {
            let ids = ids.clone();
            async move { c.deljob(ids).await }
        })
        .await
    }

    /// Subscribes to the job events of one node picked by the rule (see
    /// [`Client::subscribe`]); events are per node, and the subscription
    /// ends if that node dies.
    /// Follows a job's stdout lines ([`Client::logs`]) on the node that
    /// has it in hand: the last node [`ClusterClient::explain`] reached
    /// (a job lent to or running on another node is followed there).
    pub async fn logs(
        &self,
        id: JobId,
        key: Option<&str>,
    ) -> Result<crate::Subscription, ClientError> {
        let chain = self.explain(id, key).await?;
        let node = chain.last().map(|x| x.node.clone()).unwrap_or_default();
        let key = key.map(str::to_string);
        self.on_node(&node, |c| {
            let key = key.clone();
            async move { c.logs(id, key.as_deref()).await }
        })
        .await
    }

    pub async fn subscribe(&self, queues: Vec<String>) -> Result<crate::Subscription, ClientError> {
        self.with_failover(None, |c| {
            let queues = queues.clone();
            async move { c.subscribe(queues).await }
        })
        .await
    }

    /// The description of a node picked by the rule.
    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        self.with_failover(None, |c| async move { c.node_info().await })
            .await
    }
}

impl Slot {
    fn new(addr: SocketAddr, info: Option<ClusterNode>) -> Slot {
        Slot {
            addr,
            conn: Arc::default(),
            avoid_until: None,
            in_flight: Arc::default(),
            node_id: None,
            vouched: info.as_ref().and_then(|n| n.ca_pem.clone()),
            info,
        }
    }
}

/// The CAs a connection to one node trusts: the seeds' (the caller's
/// choice) and the one vouched for that node, if any.
fn trust_store(seeds: &[u8], vouched: Option<&str>) -> Vec<u8> {
    let mut pem = seeds.to_vec();
    if let Some(v) = vouched
        && !contains(&pem, v.as_bytes())
    {
        pem.extend_from_slice(b"\n");
        pem.extend_from_slice(v.as_bytes());
    }
    pem
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    let needle = trim(needle);
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

fn trim(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_keys_home_is_stable_spread_and_up() {
        let node = |i: u8, state: NodeState| ClusterNode {
            id: format!("{i:02x}{}", "0".repeat(38)),
            addr: format!("127.0.0.1:{}", 7000 + u16::from(i)),
            state,
            myself: false,
            exec_slots: 1,
            exec_busy: 0,
            queued: 0,
            jobs: 0,
            ca_pem: None,
        };
        let up: Vec<ClusterNode> = (1..=4).map(|i| node(i, NodeState::Up)).collect();
        let home = |nodes: &[ClusterNode], key: &str| key_home_of(nodes.iter(), "q", key);
        // The same key, the same node, whatever the order nodes are known in.
        let mut rev = up.clone();
        rev.reverse();
        for k in 0..50 {
            let key = format!("k{k}");
            assert_eq!(home(&up, &key), home(&rev, &key));
        }
        // Keys spread over the nodes.
        let homes: std::collections::BTreeSet<String> = (0..200)
            .filter_map(|k| home(&up, &format!("k{k}")))
            .collect();
        assert_eq!(homes.len(), 4);
        // A node that is down is never a home; the others keep theirs.
        let first = home(&up, "k0").expect("a home");
        let mut some_down = up.clone();
        for n in &mut some_down {
            if n.id == first {
                n.state = NodeState::Down;
            }
        }
        assert_ne!(home(&some_down, "k0").as_deref(), Some(first.as_str()));
        for k in 0..50 {
            let key = format!("k{k}");
            if home(&up, &key).as_deref() != Some(first.as_str()) {
                assert_eq!(home(&some_down, &key), home(&up, &key));
            }
        }
        assert_eq!(key_home_of([].iter(), "q", "k"), None);
    }

    #[test]
    fn pick_rules_parse() {
        assert_eq!("round-robin".parse::<Pick>(), Ok(Pick::RoundRobin));
        assert_eq!("least-loaded".parse::<Pick>(), Ok(Pick::LeastLoaded));
        assert!(
            "fastest"
                .parse::<Pick>()
                .unwrap_err()
                .contains("round-robin")
        );
    }

    #[test]
    fn a_ca_is_trusted_once() {
        let pem = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        assert!(contains(pem, pem));
        assert!(!contains(b"", pem));
        assert!(!contains(pem, b"  \n"));
    }

    #[test]
    fn leaving_and_unreachable_move_on_but_node_errors_do_not() {
        assert!(moves_on(&ClientError::Closed("x".into())));
        assert!(moves_on(&ClientError::Node(proto::WireError::new(
            ErrorCode::Leaving,
            "leaving"
        ))));
        assert!(!moves_on(&ClientError::Node(proto::WireError::new(
            ErrorCode::NoJob,
            "no job"
        ))));
    }

    /// A CA and a certificate it signs for 127.0.0.1 (a node's identity).
    struct Ca {
        pem: String,
        key: rcgen::KeyPair,
        params: rcgen::CertificateParams,
        der: rustls::pki_types::CertificateDer<'static>,
    }

    fn ca(name: &str) -> Ca {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut params = rcgen::CertificateParams::default();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        let cert = params.self_signed(&key).expect("CA");
        Ca {
            pem: cert.pem(),
            der: cert.der().clone(),
            key,
            params,
        }
    }

    /// A server config presenting a certificate for 127.0.0.1 from `ca`.
    fn server_config(ca: &Ca) -> quinn::ServerConfig {
        let key = rcgen::KeyPair::generate().expect("key");
        let mut p = rcgen::CertificateParams::default();
        p.subject_alt_names = vec![rcgen::SanType::IpAddress([127, 0, 0, 1].into())];
        let issuer = rcgen::Issuer::new(ca.params.clone(), &ca.key);
        let leaf = p.signed_by(&key, &issuer).expect("leaf");
        let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(
            rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()),
        );
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("tls13")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.der().clone(), ca.der.clone()], key_der)
            .expect("server cert");
        tls.alpn_protocols = vec![crate::CLIENT_ALPN.to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(tls).expect("quic tls");
        quinn::ServerConfig::with_crypto(Arc::new(crypto))
    }

    /// Answers the hello of every connection, as a node would.
    async fn serve_hellos(endpoint: quinn::Endpoint) {
        while let Some(incoming) = endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                let Ok((mut send, recv)) = conn.accept_bi().await else {
                    return;
                };
                let mut recv = tokio::io::BufReader::new(recv);
                while let Ok(Some(f)) =
                    proto::read_frame_buffered::<_, proto::RequestFrame>(&mut recv, 1 << 20).await
                {
                    let reply = proto::ResponseFrame {
                        id: f.id,
                        response: Response::Hello {
                            node: "b".into(),
                            protocol: proto::PROTOCOL_VERSION,
                            max_reply_bytes: 1 << 20,
                        },
                    };
                    if proto::write_frame(&mut send, &reply, 1 << 20)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    }

    fn node(id: &str, addr: SocketAddr, ca: &Ca) -> ClusterNode {
        ClusterNode {
            id: id.into(),
            addr: addr.to_string(),
            state: NodeState::Up,
            myself: false,
            exec_slots: 1,
            exec_busy: 0,
            queued: 0,
            jobs: 0,
            ca_pem: Some(ca.pem.clone()),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_ca_vouched_for_one_node_is_not_trusted_for_another() {
        let (seed, ca_a, ca_b) = (ca("seed CA"), ca("node A's CA"), ca("node B's CA"));
        // Node B's address, first held by an impostor with a certificate
        // from node A's CA.
        let endpoint =
            quinn::Endpoint::server(server_config(&ca_a), "127.0.0.1:0".parse().expect("addr"))
                .expect("server");
        let b_addr = endpoint.local_addr().expect("addr");
        tokio::spawn(serve_hellos(endpoint.clone()));
        let mut cfg = ClusterConfig::new(vec![], seed.pem.clone().into_bytes());
        cfg.connect_timeout = Duration::from_secs(5);
        let client = ClusterClient {
            shared: Arc::new(Shared {
                cfg,
                state: std::sync::Mutex::new(State {
                    slots: Vec::new(),
                    refreshed_at: None,
                    refreshing: false,
                }),
                turn: AtomicUsize::new(0),
                failovers: AtomicU64::new(0),
                uploaded: Default::default(),
            }),
        };
        // The cluster vouches for A's CA (A elsewhere) and B's CA (B here).
        let a_addr: SocketAddr = "127.0.0.1:9".parse().expect("addr");
        client.take_in(&[node("aaaa", a_addr, &ca_a), node("bbbb", b_addr, &ca_b)]);
        let b = lock(&client.shared)
            .slots
            .iter()
            .position(|s| s.addr == b_addr)
            .expect("B's slot");

        match client.connection(b).await {
            Err(ClientError::Connect(e)) => assert!(e.contains("certificate"), "{e}"),
            Err(other) => panic!("expected a certificate error, got {other}"),
            Ok(_) => panic!("A's CA was trusted for B's address"),
        }

        // The same address with a certificate from B's own CA is B.
        endpoint.set_server_config(Some(server_config(&ca_b)));
        let (c, _) = client
            .connection(b)
            .await
            .expect("B's own CA is trusted for B");
        assert_eq!(c.node_id(), "b");
    }
}
