//! Outgoing links: this node dials each peer it sends to, once, and keeps
//! the connection. One unidirectional stream per link carries `Hello` and
//! then the engine's messages in order, batched into as few writes as the
//! backlog allows; SWIM gossip goes out as datagrams on the same
//! connection. A link that fails drops what it held (the engine's protocol
//! resends what matters) and holds off new attempts for a second, so a
//! dead peer does not cause a storm of dials.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::wire::{self, Frame};
use super::{ClusterError, Inner, trust};
use crate::job::NodeName;

/// How long a dial may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a failed link blocks a new attempt to the same peer.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// Frames written per batch at most.
const BATCH: usize = 512;

/// What a link carries.
#[derive(Debug)]
pub(super) enum Out {
    Frame(Frame),
    /// A frame already encoded (one message for several peers).
    Encoded(Bytes),
    Gossip(Bytes),
}

/// The sending side of a link.
pub(super) struct LinkTx {
    tx: mpsc::UnboundedSender<Out>,
    generation: u64,
    /// The peer's incarnation when the link was dialed (0: not known).
    incarnation: u64,
}

/// Queues `out` on the link to `to`, dialing it if there is none.
pub(super) fn send(inner: &Arc<Inner>, to: NodeName, out: Out) {
    if inner.is_cut(&to) {
        inner.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    }
    let mut links = inner.links.lock().unwrap_or_else(|p| p.into_inner());
    let out = match links.get(&to) {
        Some(l) => match l.tx.send(out) {
            Ok(()) => {
                inner.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                return;
            }
            Err(mpsc::error::SendError(out)) => {
                links.remove(&to);
                out
            }
        },
        None => out,
    };
    let known = inner
        .table
        .read()
        .ok()
        .and_then(|t| t.get(&to).map(|p| (p.addr, p.incarnation)));
    let Some((addr, incarnation)) = known else {
        inner.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
        return;
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let _ = tx.send(out);
    let generation = inner.link_gen.fetch_add(1, Ordering::Relaxed);
    links.insert(
        to,
        LinkTx {
            tx,
            generation,
            incarnation,
        },
    );
    inner.stats.frames_out.fetch_add(1, Ordering::Relaxed);
    tokio::spawn(run(inner.clone(), to, addr, generation, rx));
}

/// A peer said Hello with `incarnation`. If that is newer than the one
/// the link to it was dialed for, the peer restarted and the link's
/// connection leads to the old process: nothing sent on it arrives, and it
/// would only fail at the idle timeout or once SWIM declared the peer
/// down. It is dropped now so the next message dials the new process.
pub(super) fn peer_said_hello(inner: &Inner, node: &NodeName, incarnation: u64) {
    let mut links = inner.links.lock().unwrap_or_else(|p| p.into_inner());
    let Some(l) = links.get_mut(node) else {
        return;
    };
    if l.incarnation == 0 {
        // Dialed before anything was known of it (a saved peer): it leads
        // to the process that just spoke, as far as anyone can tell.
        l.incarnation = incarnation;
    } else if l.incarnation < incarnation {
        tracing::debug!(peer = %node.short(), "peer restarted: link dropped");
        links.remove(node);
    }
}

/// Drops the link to `node` (FORGET, RESET).
pub(super) fn drop_link(inner: &Inner, node: &NodeName) {
    let mut links = inner.links.lock().unwrap_or_else(|p| p.into_inner());
    links.remove(node);
}

async fn run(
    inner: Arc<Inner>,
    node: NodeName,
    addr: SocketAddr,
    generation: u64,
    mut rx: mpsc::UnboundedReceiver<Out>,
) {
    match carry(&inner, node, addr, &mut rx).await {
        Ok(()) => {}
        Err(e) => {
            tracing::debug!(peer = %node.short(), %addr, "link ended: {e}");
            // Hold the place for a while so senders do not redial at once;
            // what arrives meanwhile is dropped.
            let until = tokio::time::Instant::now() + RETRY_AFTER;
            while let Ok(Some(_)) = tokio::time::timeout_at(until, rx.recv()).await {
                inner.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
    let mut links = inner.links.lock().unwrap_or_else(|p| p.into_inner());
    if links.get(&node).is_some_and(|l| l.generation == generation) {
        links.remove(&node);
    }
}

async fn carry(
    inner: &Inner,
    node: NodeName,
    addr: SocketAddr,
    rx: &mut mpsc::UnboundedReceiver<Out>,
) -> Result<(), ClusterError> {
    let conn = connect(inner, addr, Some(node)).await?;
    let mut stream = conn
        .open_uni()
        .await
        .map_err(|e| ClusterError::Connect(e.to_string()))?;
    let mut buf = Vec::with_capacity(64 << 10);
    wire::encode(&Frame::Hello(inner.hello.clone()), &mut buf)
        .map_err(|e| ClusterError::Refused(e.to_string()))?;
    loop {
        if !buf.is_empty() {
            stream
                .write_all(&buf)
                .await
                .map_err(|e| ClusterError::Connect(format!("write: {e}")))?;
            buf.clear();
            if buf.capacity() > 4 << 20 {
                buf.shrink_to(64 << 10);
            }
        }
        let Some(first) = rx.recv().await else {
            // Every sender is gone: the link was dropped on purpose.
            let _ = stream.finish();
            conn.close(0u32.into(), b"link dropped");
            return Ok(());
        };
        // Let the tasks already woken run first (the driver, client
        // connections): what they send to this peer then goes in the
        // same write, and so in the same packets. Without it, tokio runs
        // this task the moment the driver wakes it, and a replicated
        // add cost about one datagram per job on the entry node.
        tokio::task::yield_now().await;
        let mut next = Some(first);
        let mut n = 0;
        while let Some(out) = next.take() {
            match out {
                Out::Frame(f) => {
                    if let Err(e) = wire::encode(&f, &mut buf) {
                        tracing::warn!(peer = %node.short(), "frame not encodable: {e}");
                    }
                }
                Out::Encoded(b) => buf.extend_from_slice(&b),
                Out::Gossip(b) => {
                    let _ = conn.send_datagram(b);
                }
            }
            n += 1;
            if n < BATCH {
                next = rx.try_recv().ok();
            }
        }
    }
}

/// Dials a peer; with `expect`, checks its certificate against that
/// node's pin.
pub(super) async fn connect(
    inner: &Inner,
    addr: SocketAddr,
    expect: Option<NodeName>,
) -> Result<quinn::Connection, ClusterError> {
    let connecting = inner
        .endpoint
        .connect_with(inner.dial_config(), addr, super::ca::PEER_NAME)
        .map_err(|e| ClusterError::Connect(format!("cannot dial {addr}: {e}")))?;
    let conn = tokio::time::timeout(CONNECT_TIMEOUT, connecting)
        .await
        .map_err(|_| {
            ClusterError::Connect(format!("no answer from {addr} within {CONNECT_TIMEOUT:?}"))
        })?
        .map_err(|e| ClusterError::Connect(format!("cannot connect to {addr}: {e}")))?;
    if let Some(node) = expect {
        let fp = trust::peer_fingerprint(&conn)
            .ok_or_else(|| ClusterError::Refused(format!("{addr} presented no certificate")))?;
        inner.admit(node, fp).map_err(ClusterError::Refused)?;
    } else if let Some(fp) = trust::peer_fingerprint(&conn)
        && inner.admission.is_revoked_cert(&fp)
    {
        conn.close(1u32.into(), b"certificate revoked");
        return Err(ClusterError::Refused(format!(
            "{addr} presented a revoked certificate (a node forgotten with CLUSTER FORGET)"
        )));
    }
    Ok(conn)
}

/// One request/response exchange on its own connection and stream
/// (`CLUSTER MEET`'s handshake, module fetches).
pub(super) async fn request(
    inner: &Inner,
    addr: SocketAddr,
    expect: Option<NodeName>,
    frame: Frame,
) -> Result<Frame, ClusterError> {
    let conn = connect(inner, addr, expect).await?;
    let result = async {
        let (mut send, mut recv) = conn
            .open_bi()
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        wire::write(&mut send, &frame)
            .await
            .map_err(|e| ClusterError::Connect(e.to_string()))?;
        let _ = send.finish();
        let answer = wire::read(&mut recv, inner.cfg.max_frame_bytes)
            .await
            .map_err(|e| ClusterError::Refused(e.to_string()))?
            .ok_or_else(|| {
                ClusterError::Refused(format!("{addr} closed the stream without answering"))
            })?;
        if let Frame::Hello(h) = &answer {
            let fp = trust::peer_fingerprint(&conn)
                .ok_or_else(|| ClusterError::Refused(format!("{addr} presented no certificate")))?;
            inner.admit(h.node, fp).map_err(ClusterError::Refused)?;
        }
        if let Frame::Refused(why) = answer {
            return Err(ClusterError::Refused(format!("{addr} refused: {why}")));
        }
        Ok(answer)
    }
    .await;
    conn.close(0u32.into(), b"done");
    result
}
