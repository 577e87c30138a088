//! One client connection: every bidirectional stream starts with a frame
//! that says what it is. `PutModule` opens an upload stream (header, raw
//! module bytes, one reply); anything else opens a pipelined request stream
//! whose replies carry their request's id and may come back out of order.
//!
//! Bounds: a connection has at most `quic-max-inflight` requests
//! unanswered, over all its streams (a semaphore; a permit is returned
//! once the reply is written, so a client that stops reading its replies
//! stops being read); each request stream's reply channel has that many
//! slots, so the driver never waits on it, and a reply that finds it full
//! closes the connection with a logged reason.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::io::AsyncReadExt;
use tokio::sync::{Semaphore, mpsc, watch};
use wasque_sdk::proto::{
    self, ErrorCode, FrameError, Request, RequestFrame, Response, ResponseFrame, WireError,
};

use super::QuicConfig;
use super::translate;
use crate::api::{Command, Reply};
use crate::auth::Principal;
use crate::runtime::{Handle, ReplyTo, ReplyTx};

/// Replies written to the stream in one write at most (bytes, roughly):
/// past this a batch goes out rather than growing the buffer.
const WRITE_BATCH_BYTES: usize = 1 << 20;

/// A client stream's receiving side, buffered.
type Recv = tokio::io::BufReader<quinn::RecvStream>;

/// Serves one connection until it closes or the node stops.
pub async fn serve(
    conn: quinn::Connection,
    cfg: Arc<QuicConfig>,
    handle: Handle,
    mut stop: watch::Receiver<bool>,
) {
    let authed = Arc::new(Who::new(handle.auth().anonymous()));
    let inflight = Arc::new(Semaphore::new(cfg.max_inflight));
    let remote = conn.remote_address();
    tracing::debug!(%remote, "client connected");
    loop {
        let stream = tokio::select! {
            s = conn.accept_bi() => s,
            _ = stop.changed() => {
                conn.close(0u32.into(), b"node shutting down");
                break;
            }
        };
        match stream {
            Ok((send, recv)) => {
                let (cfg, handle, authed) = (cfg.clone(), handle.clone(), authed.clone());
                let door = Door {
                    conn: conn.clone(),
                    inflight: inflight.clone(),
                };
                tokio::spawn(
                    async move { stream_task(send, recv, cfg, handle, authed, door).await },
                );
            }
            Err(e) => {
                tracing::debug!(%remote, "client gone: {e}");
                break;
            }
        }
    }
}

/// What the streams of one connection share: the connection (to close it
/// when a reply cannot be queued) and its requests-in-flight permits.
struct Door {
    conn: quinn::Connection,
    inflight: Arc<Semaphore>,
}

async fn stream_task(
    mut send: quinn::SendStream,
    recv: quinn::RecvStream,
    cfg: Arc<QuicConfig>,
    handle: Handle,
    authed: Arc<Who>,
    door: Door,
) {
    // Buffered: a frame's length and body come from one read of the
    // stream, not two (each read takes the connection's lock).
    let mut recv = Recv::with_capacity(64 * 1024, recv);
    let first =
        match proto::read_frame_buffered::<_, RequestFrame>(&mut recv, cfg.max_frame_bytes).await {
            Ok(Some(f)) => f,
            Ok(None) => return,
            Err(e) => {
                refuse(&mut send, &mut recv, e).await;
                return;
            }
        };
    if let Request::PutModule { size, opts } = first.request {
        upload(first.id, size, opts, send, recv, &cfg, &handle, &authed).await;
    } else if let Request::Subscribe { queues } = first.request {
        subscribe(first.id, queues, send, recv, &cfg, &handle, &authed).await;
    } else if let Request::Logs { id: job, key } = first.request {
        logs(first.id, job, key, send, recv, &cfg, &handle, &authed).await;
    } else {
        pipeline(first, send, recv, cfg, handle, authed, door).await;
    }
}

/// Answers a frame that cannot be trusted, then closes the stream: after a
/// bad length or bad bytes, framing of the rest is lost.
async fn refuse(send: &mut quinn::SendStream, recv: &mut Recv, e: FrameError) {
    if let FrameError::Io(e) = &e {
        // The client went away (it closed its connection): nobody to answer.
        tracing::debug!("client stream ended: {e}");
        return;
    }
    tracing::info!("closing a client stream: {e}");
    let code = match e {
        FrameError::TooLarge { .. } => ErrorCode::TooBig,
        _ => ErrorCode::Err,
    };
    let frame = ResponseFrame {
        id: 0,
        response: Response::Error(WireError::new(code, e.to_string())),
    };
    if let Ok(bytes) = proto::encode_frame(&frame, usize::MAX) {
        let _ = send.write_all(&bytes).await;
    }
    let _ = send.finish();
    let _ = recv.get_mut().stop(1u32.into());
}

async fn pipeline(
    first: RequestFrame,
    mut send: quinn::SendStream,
    mut recv: Recv,
    cfg: Arc<QuicConfig>,
    handle: Handle,
    authed: Arc<Who>,
    door: Door,
) {
    // As many slots as requests may be in flight on the whole connection:
    // with the permits below the channel is never full, and if it ever
    // were, the connection goes, not the driver's time.
    let (tx, mut rx) = mpsc::channel::<(u64, Reply)>(cfg.max_inflight);
    let remote = door.conn.remote_address();
    let conn = door.conn.clone();
    let overflowed = AtomicBool::new(false);
    let overflow: Arc<dyn Fn() + Send + Sync> = Arc::new(move || {
        // Said once: every reply after the first that overflowed lands here too.
        if !overflowed.swap(true, Ordering::Relaxed) {
            tracing::warn!(%remote, "closing a client connection: its reply queue is full");
            conn.close(2u32.into(), b"reply queue full");
        }
    });
    let tx = ReplyTx::Bounded { tx, overflow };
    let max_reply = cfg.max_reply_bytes;
    let inflight = door.inflight.clone();
    let gone = door.conn.clone();
    // The writer returns the permit of each reply it wrote and, at the
    // end, says how many that was.
    let writer = tokio::spawn(async move {
        let mut buf = Vec::with_capacity(64 * 1024);
        let mut written = 0usize;
        // A closed connection ends the writer at once: its receiver goes,
        // and the driver's sweep then drops this stream's blocked requests.
        while let Some(first) = tokio::select! {
            r = rx.recv() => r,
            _ = gone.closed() => None,
        } {
            buf.clear();
            if buf.capacity() > 4 * WRITE_BATCH_BYTES {
                // One big reply must not pin its buffer for the stream's life.
                buf = Vec::with_capacity(64 * 1024);
            }
            let mut next = Some(first);
            let mut n = 0;
            while let Some((id, reply)) = next.take() {
                let frame = ResponseFrame {
                    id,
                    response: translate::response(reply),
                };
                if let Err(e) = proto::encode_frame_into(&mut buf, &frame, max_reply) {
                    let err = ResponseFrame {
                        id,
                        response: Response::Error(WireError::new(ErrorCode::TooBig, e.to_string())),
                    };
                    let _ = proto::encode_frame_into(&mut buf, &err, usize::MAX);
                }
                n += 1;
                if n < 256 && buf.len() < WRITE_BATCH_BYTES {
                    next = rx.try_recv().ok();
                }
            }
            if send.write_all(&buf).await.is_err() {
                return (send, written);
            }
            written += n;
            inflight.add_permits(n);
        }
        (send, written)
    });

    let mut frame = Some(first);
    let mut failure = None;
    let mut taken = 0usize;
    while let Some(f) = frame.take() {
        // A permit per request, returned when its reply is written: a
        // client that does not read its replies is not read either.
        let permit = tokio::select! {
            p = door.inflight.acquire() => p,
            _ = door.conn.closed() => break,
        };
        match permit {
            Ok(p) => p.forget(),
            Err(_) => break,
        }
        taken += 1;
        handle_request(f, &tx, &handle, &authed, max_reply);
        match proto::read_frame_buffered::<_, RequestFrame>(&mut recv, cfg.max_frame_bytes).await {
            Ok(next) => frame = next,
            Err(e) => failure = Some(e),
        }
    }
    // Replies still owed are written before the stream closes: the writer
    // ends when every sender (ours and the ones held by pending requests)
    // is gone.
    drop(tx);
    match writer.await {
        Ok((mut send, written)) => {
            // Replies never written (the client reset the stream) give
            // their permits back with the stream.
            door.inflight.add_permits(taken.saturating_sub(written));
            if let Some(e) = failure {
                refuse(&mut send, &mut recv, e).await;
            } else {
                let _ = send.finish();
            }
        }
        Err(e) => {
            tracing::warn!("client reply writer failed: {e}");
            door.conn.close(2u32.into(), b"reply writer failed");
        }
    }
}

fn handle_request(
    frame: RequestFrame,
    tx: &ReplyTx,
    handle: &Handle,
    authed: &Who,
    max_reply: usize,
) {
    let reply_to = ReplyTo {
        tx: tx.clone(),
        tag: frame.id,
    };
    match frame.request {
        Request::Hello {
            protocol, token, ..
        } => {
            let reply = if protocol != proto::PROTOCOL_VERSION {
                Reply::error(
                    ErrorCode::Unsupported,
                    format!(
                        "protocol version {protocol} is not supported; this node speaks {}",
                        proto::PROTOCOL_VERSION
                    ),
                )
            } else {
                match hello_auth(handle.auth(), token.as_deref()) {
                    Err(e) => Reply::error(ErrorCode::NoAuth, e.to_string()),
                    Ok(who) => {
                        authed.set(who);
                        Reply::Hello {
                            node: handle.node_id().to_string(),
                            protocol: proto::PROTOCOL_VERSION,
                            max_reply_bytes: max_reply as u64,
                        }
                    }
                }
            };
            reply_to.send(reply);
        }
        _ if authed.get().is_none() => {
            reply_to.send(Reply::error(
                ErrorCode::NoAuth,
                "authentication required: send the node's password in the hello",
            ));
        }
        Request::PutModule { .. } | Request::Subscribe { .. } | Request::Logs { .. } => reply_to
            .send(Reply::error(
                ErrorCode::Err,
                "PutModule, Subscribe and Logs must open a stream of their own",
            )),
        Request::NodeInfo if matches!(authed.get(), Some(Principal::Tenant(_))) => {
            reply_to.send(Reply::error(
                ErrorCode::NoAuth,
                "node figures are the admin's; a tenant's token does not open them",
            ))
        }
        Request::NodeInfo => handle.node_info(reply_to),
        Request::Nodes => reply_to.send(Reply::Nodes(crate::cluster::discovery::nodes(
            handle.cluster(),
        ))),
        req @ (Request::ScheduleAdd(_)
        | Request::ScheduleList
        | Request::ScheduleShow { .. }
        | Request::ScheduleDel { .. }) => {
            let who = authed.get().unwrap_or(Principal::Admin);
            let reply = match translate::schedule(req) {
                Some(cmd) => translate::schedule_reply(crate::sched::command::run(
                    handle,
                    &who,
                    cmd,
                    crate::runtime::now_ms(),
                )),
                None => Reply::error(ErrorCode::Unsupported, "unsupported request"),
            };
            reply_to.send(reply);
        }
        other => match translate::command(other) {
            Some(Command::DeleteModule { hash }) => {
                let (handle, who) = (handle.clone(), authed.get().unwrap_or(Principal::Admin));
                tokio::spawn(async move { reply_to.send(handle.delete_module(&who, hash).await) });
            }
            Some(Command::ListModules) => {
                let (handle, who) = (handle.clone(), authed.get().unwrap_or(Principal::Admin));
                tokio::spawn(async move { reply_to.send(handle.list_modules(&who).await) });
            }
            Some(cmd) => handle.submit_as(&authed.get().unwrap_or(Principal::Admin), cmd, reply_to),
            None => reply_to.send(Reply::error(ErrorCode::Unsupported, "unsupported request")),
        },
    }
}

/// A `Subscribe` stream: the node's job events of `queues` (all when
/// empty), one frame each, until the client closes its side or falls so
/// far behind that events were lost (then an error frame says so).
async fn subscribe(
    id: u64,
    queues: Vec<String>,
    mut send: quinn::SendStream,
    mut recv: Recv,
    cfg: &QuicConfig,
    handle: &Handle,
    authed: &Who,
) {
    let max = cfg.max_frame_bytes;
    let write = |response: Response| ResponseFrame { id, response };
    if authed.get().is_none() {
        let frame = write(Response::Error(WireError::new(
            ErrorCode::NoAuth,
            "authentication required",
        )));
        let _ = proto::write_frame(&mut send, &frame, max).await;
        let _ = send.finish();
        return;
    }
    // A tenant hears its own queues only, named as it names them.
    let prefix = match authed.get() {
        Some(Principal::Tenant(name)) => Some(format!("{name}/")),
        _ => None,
    };
    let queues: Vec<String> = match &prefix {
        Some(p) => queues.iter().map(|q| format!("{p}{q}")).collect(),
        None => queues,
    };
    let mut events = handle.pubsub().listen();
    // Subscribed: every event from now on reaches this stream.
    if proto::write_frame(&mut send, &write(Response::Ok), max)
        .await
        .is_err()
    {
        return;
    }
    let mut sink = [0u8; 64];
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Some(p)) => {
                    // Job events only: stdout lines go to `Logs` streams.
                    if p.log.is_some() {
                        continue;
                    }
                    if !queues.is_empty() && !queues.iter().any(|q| *q == p.queue) {
                        continue;
                    }
                    let json = match &prefix {
                        None => String::from_utf8_lossy(&p.payload).into_owned(),
                        Some(pre) if p.queue.starts_with(pre.as_str()) => {
                            crate::net::resp::pubsub::unscoped_payload(&p.payload, pre)
                        }
                        Some(_) => continue,
                    };
                    if proto::write_frame(&mut send, &write(Response::Event(json)), max)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(None) => break,
                Err(lost) => {
                    let frame = write(Response::Error(WireError::new(
                        ErrorCode::Err,
                        format!("slow subscriber: {lost} events were lost; subscribe again"),
                    )));
                    let _ = proto::write_frame(&mut send, &frame, max).await;
                    break;
                }
            },
            // The client closing its side (or resetting) ends the stream.
            n = recv.read(&mut sink) => if !matches!(n, Ok(k) if k > 0) { break },
        }
    }
    let _ = send.finish();
}

/// A `Logs` stream: the stdout lines of job `job` while it runs here
/// (`exec/live.rs` taps them, the hub carries them as `logs:ID`), until
/// the job has finished. Whether it has is asked of the engine (SHOW, as
/// the request's principal, with its key) when the stream opens, on each
/// end event of the job, and every second, so a lost event or a job gone
/// elsewhere ends the stream too.
#[allow(clippy::too_many_arguments)]
async fn logs(
    id: u64,
    job: wasque_sdk::proto::JobId,
    key: Option<String>,
    mut send: quinn::SendStream,
    mut recv: Recv,
    cfg: &QuicConfig,
    handle: &Handle,
    authed: &Who,
) {
    let max = cfg.max_frame_bytes;
    let write = |response: Response| ResponseFrame { id, response };
    let Some(who) = authed.get() else {
        let frame = write(Response::Error(WireError::new(
            ErrorCode::NoAuth,
            "authentication required",
        )));
        let _ = proto::write_frame(&mut send, &frame, max).await;
        let _ = send.finish();
        return;
    };
    let prefix = match &who {
        Principal::Tenant(name) => Some(format!("{name}/")),
        Principal::Admin => None,
    };
    // Listening before the first look: no line falls between the two.
    let mut events = handle.pubsub().listen();
    let ended = || {
        let (key, who) = (key.clone(), who.clone());
        async move { finished(handle, &who, job, key).await }
    };
    let first = match ended().await {
        Ok(done) => done,
        Err(e) => {
            let _ = proto::write_frame(&mut send, &write(Response::Error(e)), max).await;
            let _ = send.finish();
            return;
        }
    };
    if proto::write_frame(&mut send, &write(Response::Ok), max)
        .await
        .is_err()
        || first
    {
        let _ = send.finish();
        return;
    }
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut sink = [0u8; 64];
    let id_text = job.to_string();
    loop {
        tokio::select! {
            ev = events.recv() => match ev {
                Ok(Some(p)) if p.log == Some(job) => {
                    let json = match &prefix {
                        None => String::from_utf8_lossy(&p.payload).into_owned(),
                        Some(pre) => crate::net::resp::pubsub::unscoped_payload(&p.payload, pre),
                    };
                    if proto::write_frame(&mut send, &write(Response::Event(json)), max)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
                Ok(Some(p)) => {
                    // An end of this job (a failed run may be retried:
                    // the engine says whether it has finished).
                    let end = p.log.is_none()
                        && serde_json::from_slice::<serde_json::Value>(&p.payload).is_ok_and(|v| {
                            v["id"] == id_text.as_str()
                                && matches!(
                                    v["event"].as_str(),
                                    Some("finished" | "failed" | "acked" | "deleted" | "expired")
                                )
                        });
                    if end && !matches!(ended().await, Ok(false)) {
                        break;
                    }
                }
                Ok(None) => break,
                Err(lost) => {
                    // Lines among the events lost: said so, as drops.
                    let json = serde_json::json!({
                        "event": "log", "id": id_text, "dropped": lost,
                    })
                    .to_string();
                    if proto::write_frame(&mut send, &write(Response::Event(json)), max)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            },
            _ = tick.tick() => {
                if !matches!(ended().await, Ok(false)) {
                    break;
                }
            }
            n = recv.read(&mut sink) => if !matches!(n, Ok(k) if k > 0) { break },
        }
    }
    let _ = send.finish();
}

/// Whether the job has finished, as `who` may see it (SHOW with its key);
/// the error a missing job (or a refused principal) gets.
async fn finished(
    handle: &Handle,
    who: &Principal,
    job: wasque_sdk::proto::JobId,
    key: Option<String>,
) -> Result<bool, WireError> {
    let show = Command::Show { id: job };
    let cmd = match key {
        Some(key) => Command::WithKey {
            key,
            cmd: Box::new(show),
        },
        None => show,
    };
    match handle.scoped(who, cmd) {
        Ok(cmd) => match handle.call(cmd).await {
            Reply::Job(s) => Ok(s.state.is_finished()),
            Reply::Error(e) => Err(e),
            other => Err(WireError::new(
                ErrorCode::Internal,
                format!("unexpected engine answer: {other:?}"),
            )),
        },
        Err(e) => Err(e),
    }
}

#[allow(clippy::too_many_arguments)]
async fn upload(
    id: u64,
    size: u64,
    opts: proto::PutOptions,
    mut send: quinn::SendStream,
    mut recv: Recv,
    cfg: &QuicConfig,
    handle: &Handle,
    authed: &Who,
) {
    let reply = if authed.get().is_none() {
        let _ = recv.get_mut().stop(1u32.into());
        Response::Error(WireError::new(ErrorCode::NoAuth, "authentication required"))
    } else if size > cfg.max_module_bytes as u64 {
        let _ = recv.get_mut().stop(1u32.into());
        Response::Error(WireError::new(
            ErrorCode::TooBig,
            format!(
                "module of {size} bytes is over the node's bound of {} bytes (max-module-bytes)",
                cfg.max_module_bytes
            ),
        ))
    } else {
        let mut bytes = vec![0u8; size as usize];
        match recv.read_exact(&mut bytes).await {
            Err(e) => {
                // The client went away mid-upload: nothing was stored.
                tracing::info!("module upload abandoned after a partial transfer: {e}");
                return;
            }
            Ok(_) => match handle
                .put_module(&authed.get().unwrap_or(Principal::Admin), bytes, opts)
                .await
            {
                Ok(info) => Response::Module(info),
                Err(e) => Response::Error(e),
            },
        }
    };
    let frame = ResponseFrame {
        id,
        response: reply,
    };
    if let Ok(bytes) = proto::encode_frame(&frame, usize::MAX) {
        let _ = send.write_all(&bytes).await;
    }
    let _ = send.finish();
    // Give the reply a moment to leave before the stream is dropped.
    let _ = send.stopped().await;
}

/// A hello's token: a tenant's `name:token` makes the client that tenant
/// (on any node); otherwise none is needed on a node without credentials
/// (a token sent anyway is ignored, as before), and the password (or
/// `admin:password`) is on one with them.
fn hello_auth(
    auth: &crate::auth::Auth,
    token: Option<&str>,
) -> Result<Principal, crate::auth::AuthError> {
    let names_tenant = |t: &str| {
        t.split_once(':')
            .is_some_and(|(u, _)| auth.tenants().get(u).is_some())
    };
    match (token, auth.anonymous()) {
        (Some(t), _) if names_tenant(t) => auth.verify_bearer(t),
        (_, Some(p)) => Ok(p),
        (t, None) => auth.verify_bearer(t.unwrap_or("")),
    }
}

/// Who a connection's client is, shared by its streams; set by the hello
/// (`None`: not authenticated on a node with credentials).
struct Who(std::sync::RwLock<Option<Principal>>);

impl Who {
    fn new(p: Option<Principal>) -> Who {
        Who(std::sync::RwLock::new(p))
    }

    fn get(&self) -> Option<Principal> {
        self.0.read().map(|p| p.clone()).unwrap_or(None)
    }

    fn set(&self, p: Principal) {
        if let Ok(mut w) = self.0.write() {
            *w = Some(p);
        }
    }
}
