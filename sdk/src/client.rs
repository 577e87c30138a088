//! The async Rust client: one QUIC connection to a node, one long-lived
//! bidirectional stream carrying pipelined requests (replies matched by id,
//! so many requests can be in flight), and a stream of its own per module
//! upload.

use hashbrown::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::proto::{
    self, AddJob, FrameError, JobId, JobStatus, ModuleHash, ModuleInfo, NodeInfo, Request,
    RequestFrame, Response, ResponseFrame, WireError,
};
use crate::tls::{CLIENT_ALPN, client_tls_config};

/// Where and how to connect.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The node's address.
    pub addr: SocketAddr,
    /// PEM of the CA that signed the node's certificate.
    pub ca_pem: Vec<u8>,
    /// Name checked against the node's certificate; defaults to the IP.
    pub server_name: String,
    /// Secret for nodes that require one (`requirepass`).
    pub token: Option<String>,
    /// Bound on one request frame, and on replies until the node's hello
    /// says its own reply bound (which the client then accepts, so a job
    /// whose body and output are at the node's maxima can be shown).
    pub max_frame: usize,
    /// How long to wait for the connection.
    pub connect_timeout: Duration,
}

impl ClientConfig {
    /// Connects to `addr`, trusting the CA file at `ca_file`.
    pub fn with_ca_file(
        addr: &str,
        ca_file: impl AsRef<Path>,
    ) -> Result<ClientConfig, ClientError> {
        let addr = resolve(addr)?;
        let path = ca_file.as_ref();
        let ca_pem = std::fs::read(path).map_err(|e| ClientError::CaMissing {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Ok(ClientConfig {
            addr,
            ca_pem,
            server_name: addr.ip().to_string(),
            token: None,
            max_frame: proto::DEFAULT_MAX_FRAME,
            connect_timeout: Duration::from_secs(5),
        })
    }

    /// Connects to a local node whose data dir is `data_dir` (its CA is at
    /// `DATA_DIR/tls/ca.pem`).
    pub fn local(addr: &str, data_dir: impl AsRef<Path>) -> Result<ClientConfig, ClientError> {
        Self::with_ca_file(addr, data_dir.as_ref().join("tls").join("ca.pem"))
    }
}

pub(crate) fn resolve(addr: &str) -> Result<SocketAddr, ClientError> {
    use std::net::ToSocketAddrs;
    addr.to_socket_addrs()
        .map_err(|e| ClientError::Connect(format!("cannot resolve {addr:?}: {e}")))?
        .next()
        .ok_or_else(|| ClientError::Connect(format!("{addr:?} resolves to no address")))
}

/// Why a client call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "cannot read the CA certificate {path}: {reason} (start the node once to create it, or pass --ca FILE)"
    )]
    CaMissing { path: PathBuf, reason: String },
    #[error("cannot connect: {0}")]
    Connect(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("connection lost: {0}")]
    Closed(String),
    #[error(transparent)]
    Frame(#[from] FrameError),
    // Transparent: `{0}` with a source would print the node's message
    // twice in an error chain (`wasque`'s `error: X: X`).
    #[error(transparent)]
    Node(#[from] WireError),
    #[error("unexpected reply from node: {0}")]
    Unexpected(String),
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// Whether the node could not be reached at all (CLI exit code 3).
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ClientError::Connect(_) | ClientError::Closed(_))
    }
}

/// Callers waiting for replies, by request id. A plain mutex: it is never
/// held across an await.
type Pending = Arc<std::sync::Mutex<HashMap<u64, oneshot::Sender<Response>>>>;

fn lock(p: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Response>>> {
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A connection to one node. Cheap to clone; clones share the connection.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
    requests: mpsc::UnboundedSender<(RequestFrame, oneshot::Sender<Response>)>,
    next_id: AtomicU64,
    max_frame: usize,
    node_id: String,
}

impl Drop for Inner {
    fn drop(&mut self) {
        self.conn.close(0u32.into(), b"client done");
    }
}

impl Client {
    /// Connects and says hello.
    pub async fn connect(cfg: ClientConfig) -> Result<Client, ClientError> {
        let quic = client_tls_config(&cfg.ca_pem, CLIENT_ALPN).map_err(ClientError::Tls)?;
        let bind: SocketAddr = if cfg.addr.is_ipv6() {
            "[::]:0".parse().expect("literal address")
        } else {
            "0.0.0.0:0".parse().expect("literal address")
        };
        let mut endpoint = quinn::Endpoint::client(bind)?;
        endpoint.set_default_client_config(quic);
        let connecting = endpoint
            .connect(cfg.addr, &cfg.server_name)
            .map_err(|e| ClientError::Connect(format!("{}: {e}", cfg.addr)))?;
        let conn = tokio::time::timeout(cfg.connect_timeout, connecting)
            .await
            .map_err(|_| {
                ClientError::Connect(format!(
                    "no answer from {} within {:?} (is a node running there?)",
                    cfg.addr, cfg.connect_timeout
                ))
            })?
            .map_err(|e| ClientError::Connect(format!("{}: {e}", cfg.addr)))?;
        let (send, recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let pending: Pending = Arc::default();
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(write_loop(send, rx, pending.clone(), cfg.max_frame));
        tokio::spawn(read_loop(recv, pending, cfg.max_frame));
        let mut client = Client {
            inner: Arc::new(Inner {
                conn,
                _endpoint: endpoint,
                requests: tx,
                next_id: AtomicU64::new(1),
                max_frame: cfg.max_frame,
                node_id: String::new(),
            }),
        };
        let hello = client
            .call(Request::Hello {
                protocol: proto::PROTOCOL_VERSION,
                client: format!("wasque-sdk/{}", env!("CARGO_PKG_VERSION")),
                token: cfg.token.clone(),
            })
            .await?;
        match hello {
            // The read loop took the node's reply bound from this hello.
            Response::Hello { node, .. } => {
                if let Some(inner) = Arc::get_mut(&mut client.inner) {
                    inner.node_id = node;
                }
                Ok(client)
            }
            other => Err(unexpected(other)),
        }
    }

    /// Whether the connection has closed (the node went away or said so).
    pub fn is_closed(&self) -> bool {
        self.inner.conn.close_reason().is_some()
    }

    /// Id of the node this client talks to.
    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// Sends one request on the pipelined stream and waits for its reply.
    /// Node errors come back as [`ClientError::Node`].
    pub async fn call(&self, request: Request) -> Result<Response, ClientError> {
        let id = self.inner.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.inner
            .requests
            .send((RequestFrame { id, request }, tx))
            .map_err(|_| ClientError::Closed(self.close_reason()))?;
        match rx.await {
            Ok(Response::Error(e)) => Err(ClientError::Node(e)),
            Ok(r) => Ok(r),
            Err(_) => Err(ClientError::Closed(self.close_reason())),
        }
    }

    fn close_reason(&self) -> String {
        match self.inner.conn.close_reason() {
            Some(r) => r.to_string(),
            None => "the node closed the request stream".into(),
        }
    }

    /// Opens a stream of its own for `request` (an upload, a
    /// subscription); returns it with the request's frame, to be written
    /// first.
    async fn own_stream(
        &self,
        request: Request,
    ) -> Result<(quinn::SendStream, quinn::RecvStream, Vec<u8>), ClientError> {
        let (send, recv) = self
            .inner
            .conn
            .open_bi()
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let head = proto::encode_frame(&RequestFrame { id: 0, request }, self.inner.max_frame)?;
        Ok((send, recv, head))
    }

    /// Uploads a module on a stream of its own; the node validates and
    /// compiles it (once per node) before answering.
    pub async fn put_module(&self, bytes: impl AsRef<[u8]>) -> Result<ModuleInfo, ClientError> {
        self.put_module_with(bytes, proto::PutOptions::default())
            .await
    }

    /// Uploads a module with a name and version, or copies on peers
    /// before the answer (`opts.replicate`).
    pub async fn put_module_with(
        &self,
        bytes: impl AsRef<[u8]>,
        opts: proto::PutOptions,
    ) -> Result<ModuleInfo, ClientError> {
        let bytes = bytes.as_ref();
        let (mut send, mut recv, head) = self
            .own_stream(Request::PutModule {
                size: bytes.len() as u64,
                opts,
            })
            .await?;
        let sent = async {
            send.write_all(&head).await?;
            send.write_all(bytes).await?;
            send.finish()?;
            Ok::<(), std::io::Error>(())
        }
        .await;
        // Even if the write failed (the node refused mid-upload), its reply
        // says why.
        let reply: Option<ResponseFrame> =
            proto::read_frame(&mut recv, self.inner.max_frame).await?;
        match reply.map(|r| r.response) {
            Some(Response::Module(m)) => Ok(m),
            Some(Response::Error(e)) => Err(ClientError::Node(e)),
            Some(other) => Err(unexpected(other)),
            None => Err(match sent {
                Err(e) => ClientError::Io(e),
                Ok(()) => ClientError::Closed("node closed the upload stream".into()),
            }),
        }
    }

    /// Subscribes to the node's job events of `queues` (every queue when
    /// empty), on a stream of its own. Events come as the JSON documents
    /// RESP subscribers get; dropping the subscription ends it. A
    /// subscriber that falls thousands of events behind gets an error
    /// and must subscribe again (the node never slows down for it).
    pub async fn subscribe(&self, queues: Vec<String>) -> Result<Subscription, ClientError> {
        self.open_events(Request::Subscribe { queues }).await
    }

    /// Follows the stdout lines of a job running on this node as they
    /// come (`wasque logs -f`): events `{"event":"log","id":…,"line":…}`
    /// (`"dropped": n` when the node's bounds dropped lines before it),
    /// until the job has finished, when `next` answers `None` (at once if
    /// it already had: its whole output is in its result). `NoJob` from
    /// a node without a copy. `key` opens a job added with `asynckey`.
    pub async fn logs(&self, id: JobId, key: Option<&str>) -> Result<Subscription, ClientError> {
        let key = key.map(str::to_string);
        self.open_events(Request::Logs { id, key }).await
    }

    /// A stream of its own for `request` (`Subscribe`, `Logs`), once the
    /// node answered `Ok`.
    async fn open_events(&self, request: Request) -> Result<Subscription, ClientError> {
        let (mut send, recv, head) = self.own_stream(request).await?;
        send.write_all(&head)
            .await
            .map_err(|e| ClientError::Closed(e.to_string()))?;
        let mut sub = Subscription {
            _send: send,
            recv: tokio::io::BufReader::new(recv),
            max_frame: self.inner.max_frame,
        };
        // The node says when it is subscribed: events after this return
        // are not missed.
        let first: Option<ResponseFrame> = proto::read_frame(&mut sub.recv, sub.max_frame).await?;
        match first.map(|f| f.response) {
            Some(Response::Ok) => Ok(sub),
            Some(Response::Error(e)) => Err(ClientError::Node(e)),
            Some(other) => Err(unexpected(other)),
            None => Err(ClientError::Closed(
                "the node closed the subscription".into(),
            )),
        }
    }

    /// The modules of every member that answered, with their holders.
    pub async fn list_modules(&self) -> Result<proto::ModuleCatalogue, ClientError> {
        match self.call(Request::ListModules).await? {
            Response::Modules(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    pub async fn stat_module(&self, hash: ModuleHash) -> Result<ModuleInfo, ClientError> {
        match self.call(Request::StatModule { hash }).await? {
            Response::Module(m) => Ok(m),
            other => Err(unexpected(other)),
        }
    }

    pub async fn delete_module(&self, hash: ModuleHash) -> Result<(), ClientError> {
        match self.call(Request::DeleteModule { hash }).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Adds a job; returns its id once the node accepted it.
    pub async fn add_job(&self, mut job: AddJob) -> Result<JobId, ClientError> {
        job.wait_ms = None;
        match self.call(Request::AddJob(Box::new(job))).await? {
            Response::JobAdded { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Adds part `index` of a distributed job (added with [`AddJob::map`]);
    /// returns the job that runs it. Adding an index again returns the
    /// part's current job, so a retry after a lost reply is safe.
    pub async fn add_part(
        &self,
        parent: JobId,
        index: u32,
        body: Vec<u8>,
    ) -> Result<JobId, ClientError> {
        match self
            .call(Request::AddPart {
                parent,
                index,
                body,
            })
            .await?
        {
            Response::JobAdded { id } => Ok(id),
            other => Err(unexpected(other)),
        }
    }

    /// Adds a job and waits up to `wait_ms` for its result in the same
    /// request; the job is acknowledged once the result is sent, so nothing
    /// is left behind. A job that did not finish in time stays queued: its
    /// status comes back with no result. The status of a finished job
    /// leaves out the body (you sent it). A job kept on one node is stored
    /// only if it outlives `wait_ms`: if the node dies while it runs, this
    /// call fails and the job is gone (README, Durability).
    pub async fn run(&self, mut job: AddJob, wait_ms: u64) -> Result<JobStatus, ClientError> {
        job.wait_ms = Some(wait_ms);
        job.ack_on_result = true;
        match self.call(Request::AddJob(Box::new(job))).await? {
            Response::Job(s) => Ok(*s),
            other => Err(unexpected(other)),
        }
    }

    /// The job's status document.
    pub async fn show(&self, id: JobId) -> Result<JobStatus, ClientError> {
        match self.call(Request::Show { id }).await? {
            Response::Job(s) => Ok(*s),
            other => Err(unexpected(other)),
        }
    }

    /// Why the job is where it is, as this node sees it (`EXPLAIN`; see
    /// README, Explain). `key` opens a job added with `asynckey`.
    pub async fn explain(
        &self,
        id: JobId,
        key: Option<&str>,
    ) -> Result<proto::Explain, ClientError> {
        let key = key.map(str::to_string);
        match self.call(Request::Explain { id, key }).await? {
            Response::Explain(x) => Ok(*x),
            other => Err(unexpected(other)),
        }
    }

    /// The status of a job added with `asynckey`, given the key.
    pub async fn show_by_key(&self, key: &str, id: JobId) -> Result<JobStatus, ClientError> {
        match self
            .call(Request::ShowByKey {
                key: key.to_string(),
                id,
            })
            .await?
        {
            Response::Job(s) => Ok(*s),
            other => Err(unexpected(other)),
        }
    }

    /// Waits until the job is finished (`Some`) or `timeout_ms` passes (`None`).
    /// The node wakes the waiter when the job finishes; nothing polls.
    pub async fn wait(&self, id: JobId, timeout_ms: u64) -> Result<Option<JobStatus>, ClientError> {
        self.wait_keyed(None, id, timeout_ms).await
    }

    /// [`Client::wait`] for a job added with `asynckey`, given the key.
    pub async fn wait_by_key(
        &self,
        key: &str,
        id: JobId,
        timeout_ms: u64,
    ) -> Result<Option<JobStatus>, ClientError> {
        self.wait_keyed(Some(key), id, timeout_ms).await
    }

    async fn wait_keyed(
        &self,
        key: Option<&str>,
        id: JobId,
        timeout_ms: u64,
    ) -> Result<Option<JobStatus>, ClientError> {
        let request = match key {
            Some(key) => Request::WaitByKey {
                key: key.to_string(),
                id,
                timeout_ms,
            },
            None => Request::Wait { id, timeout_ms },
        };
        match self.call(request).await? {
            Response::Job(s) => Ok(Some(*s)),
            Response::NotFinished => Ok(None),
            other => Err(unexpected(other)),
        }
    }

    /// Acknowledges jobs; returns how many the node knew.
    pub async fn ack(&self, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.count(Request::Ack { ids }).await
    }

    /// Acknowledges jobs added with `asynckey` (and unkeyed ones), given
    /// the key; returns how many the node knew.
    pub async fn ack_by_key(&self, key: &str, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.count(Request::AckByKey {
            key: key.to_string(),
            ids,
        })
        .await
    }

    /// Deletes jobs; returns how many the node held.
    pub async fn deljob(&self, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.count(Request::DelJob { ids }).await
    }

    /// Deletes jobs added with `asynckey` (and unkeyed ones), given the key.
    pub async fn deljob_by_key(&self, key: &str, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.count(Request::DelJobByKey {
            key: key.to_string(),
            ids,
        })
        .await
    }

    /// Gives delivered plain jobs back (Disque's NACK): queued again after
    /// `delay_ms` (at once with `None`, or after the job's backoff when it
    /// has a retry policy); a job past its attempts goes to the
    /// dead-letter queue. Returns how many were taken back.
    pub async fn nack(&self, ids: Vec<JobId>, delay_ms: Option<u64>) -> Result<u64, ClientError> {
        self.count(Request::Nack { ids, delay_ms }).await
    }

    /// Cancels jobs (`CANCEL`): how many were cancelled. The node must
    /// hold a copy of at least one; see README, Cancel.
    pub async fn cancel(&self, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.count(Request::Cancel { ids }).await
    }

    /// The dead letters of `queue` held by this node, oldest first (at
    /// most `count`, and at most 1,000).
    pub async fn dlq_list(&self, queue: &str, count: u32) -> Result<Vec<JobStatus>, ClientError> {
        let request = Request::DlqList {
            queue: queue.to_string(),
            count,
        };
        match self.call(request).await? {
            Response::Jobs(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// Queues dead letters of `queue` again with fresh attempts: `ids`, or
    /// every one when empty. Returns how many.
    pub async fn dlq_requeue(&self, queue: &str, ids: Vec<JobId>) -> Result<u64, ClientError> {
        self.count(Request::DlqRequeue {
            queue: queue.to_string(),
            ids,
        })
        .await
    }

    /// Forgets every dead letter of `queue`, on every holder. Returns how
    /// many.
    pub async fn dlq_purge(&self, queue: &str) -> Result<u64, ClientError> {
        self.count(Request::DlqPurge {
            queue: queue.to_string(),
        })
        .await
    }

    /// Creates a schedule (README, Schedules): from its next tick on, the
    /// cluster adds one job from `spec.job` per tick. A name in use is
    /// refused.
    pub async fn schedule_add(&self, spec: proto::ScheduleSpec) -> Result<(), ClientError> {
        match self.call(Request::ScheduleAdd(Box::new(spec))).await? {
            Response::Ok => Ok(()),
            other => Err(unexpected(other)),
        }
    }

    /// Every schedule this client may see (a tenant: its own).
    pub async fn schedules(&self) -> Result<Vec<proto::ScheduleInfo>, ClientError> {
        match self.call(Request::ScheduleList).await? {
            Response::Schedules(list) => Ok(list),
            other => Err(unexpected(other)),
        }
    }

    /// One schedule, with its next tick and its recent ticks and jobs.
    pub async fn schedule(&self, name: &str) -> Result<proto::ScheduleInfo, ClientError> {
        let request = Request::ScheduleShow {
            name: name.to_string(),
        };
        match self.call(request).await? {
            Response::Schedules(mut list) if list.len() == 1 => Ok(list.remove(0)),
            other => Err(unexpected(other)),
        }
    }

    /// Removes a schedule on every node.
    pub async fn schedule_remove(&self, name: &str) -> Result<(), ClientError> {
        self.count(Request::ScheduleDel {
            name: name.to_string(),
        })
        .await
        .map(|_| ())
    }

    async fn count(&self, request: Request) -> Result<u64, ClientError> {
        match self.call(request).await? {
            Response::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Every node of the cluster as this node sees it (client discovery;
    /// [`crate::ClusterClient`] uses it).
    pub async fn nodes(&self) -> Result<Vec<proto::ClusterNode>, ClientError> {
        match self.call(Request::Nodes).await? {
            Response::Nodes(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    pub async fn node_info(&self) -> Result<NodeInfo, ClientError> {
        match self.call(Request::NodeInfo).await? {
            Response::NodeInfo(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }
}

/// A stream of job events from one node (see [`Client::subscribe`]).
pub struct Subscription {
    /// Kept open: closing it ends the subscription.
    _send: quinn::SendStream,
    recv: tokio::io::BufReader<quinn::RecvStream>,
    max_frame: usize,
}

impl Subscription {
    /// The next event (`{"event":"finished","id":"…","queue":"…"}`), or
    /// `None` when the node ended the stream.
    pub async fn next(&mut self) -> Result<Option<serde_json::Value>, ClientError> {
        let frame: Option<ResponseFrame> =
            proto::read_frame(&mut self.recv, self.max_frame).await?;
        match frame.map(|f| f.response) {
            None => Ok(None),
            Some(Response::Event(json)) => serde_json::from_str(&json)
                .map(Some)
                .map_err(|e| ClientError::Unexpected(format!("event is not JSON: {e}"))),
            Some(Response::Error(e)) => Err(ClientError::Node(e)),
            Some(other) => Err(unexpected(other)),
        }
    }
}

fn unexpected(r: Response) -> ClientError {
    ClientError::Unexpected(format!("{r:?}"))
}

/// Writes queued requests, batching whatever is ready into one write.
async fn write_loop(
    mut send: quinn::SendStream,
    mut rx: mpsc::UnboundedReceiver<(RequestFrame, oneshot::Sender<Response>)>,
    pending: Pending,
    max_frame: usize,
) {
    let mut buf = Vec::with_capacity(64 * 1024);
    while let Some(first) = rx.recv().await {
        buf.clear();
        let mut batch = vec![first];
        while batch.len() < 256 {
            match rx.try_recv() {
                Ok(item) => batch.push(item),
                Err(_) => break,
            }
        }
        {
            let mut p = lock(&pending);
            for (frame, reply) in batch {
                match proto::encode_frame_into(&mut buf, &frame, max_frame) {
                    Ok(()) => {
                        p.insert(frame.id, reply);
                    }
                    Err(e) => {
                        let _ = reply.send(Response::Error(WireError::new(
                            proto::ErrorCode::TooBig,
                            e.to_string(),
                        )));
                    }
                }
            }
        }
        if send.write_all(&buf).await.is_err() {
            break;
        }
    }
    let _ = send.finish();
    // Wake callers whose requests can no longer be answered.
    lock(&pending).clear();
}

/// Reads replies and hands each to its waiting caller.
/// Replies are read up to `max_frame` until the node's hello says its own
/// reply bound, which is taken before the next reply is read.
async fn read_loop(recv: quinn::RecvStream, pending: Pending, max_frame: usize) {
    // Buffered, so one read of the stream usually yields many replies.
    let mut recv = tokio::io::BufReader::with_capacity(64 * 1024, recv);
    let mut max = max_frame;
    loop {
        let frame = match proto::read_frame_buffered::<_, ResponseFrame>(&mut recv, max).await {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(FrameError::Io(e)) => {
                tracing::debug!("request stream ended: {e}");
                break;
            }
            Err(e) => {
                tracing::warn!("closing the request stream: {e}");
                break;
            }
        };
        if let Response::Hello {
            max_reply_bytes, ..
        } = &frame.response
        {
            // The node is authenticated by TLS; its bound is at most what
            // a 4-byte length can say.
            let announced = (*max_reply_bytes).min(u32::MAX as u64);
            max = max.max(usize::try_from(announced).unwrap_or(usize::MAX));
        }
        let waiting = lock(&pending).remove(&frame.id);
        if let Some(tx) = waiting {
            let _ = tx.send(frame.response);
        }
    }
    // Dropping the senders wakes every caller with "connection lost".
    lock(&pending).clear();
}
