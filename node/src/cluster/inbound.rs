//! Connections peers open to this node. In loopback trust mode a peer
//! must come from this host (a loopback address, or one of this host's
//! interface addresses) and present a certificate; every
//! stream then starts with the peer's `Hello`, whose node id must match
//! the certificate pinned for it. A stream that breaks the protocol is
//! stopped with a logged reason; the connection's other streams go on.
//! Gossip datagrams are not fed to SWIM until a `Hello` on the connection
//! has been checked against the pins: a connection that never said who it
//! is cannot feed SWIM. The few that race ahead of the peer's own Hello
//! (datagrams overtake its stream) are held, up to `HELD_GOSSIP`, and fed
//! once it is verified; the rest, and the held ones of a connection that
//! ends unverified, are dropped and counted (`cluster_gossip_dropped`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::membership::Cmd;
use super::wire::{self, Frame};
use super::{Inner, PeerEvent, is_loopback, trust};
use crate::job::NodeName;

/// Gossip datagrams held per connection until its peer's Hello is
/// verified (SWIM's announce and a few probes; it tolerates loss).
const HELD_GOSSIP: usize = 16;

/// Who is at the other end of a connection, once a Hello said so and
/// its pin held.
type Verified = Arc<tokio::sync::watch::Sender<Option<NodeName>>>;

fn verified(who: &Verified, node: NodeName) {
    who.send_if_modified(|v| {
        if v.is_none() {
            *v = Some(node);
            true
        } else {
            false
        }
    });
}

/// Serves one peer connection until it closes.
pub(super) async fn serve(inner: Arc<Inner>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    // A node bound to 0.0.0.0 announces this host's address: a peer on
    // this host that dials it comes from that address, not loopback. Its
    // source is one of ours, so it is on this host all the same (a forged
    // source cannot finish the QUIC handshake).
    if !inner.ca_mode() && !is_loopback(&remote) && !crate::net::announce::is_this_host(remote.ip())
    {
        return refuse_conn(
            &inner,
            &conn,
            "loopback trust mode accepts peers from loopback addresses only",
            b"loopback trust mode: peers only from loopback",
        );
    }
    let Some(fp) = trust::peer_fingerprint(&conn) else {
        return refuse_conn(
            &inner,
            &conn,
            "it presented no certificate",
            b"the peer protocol requires a certificate",
        );
    };
    if inner.admission.is_revoked_cert(&fp) {
        return refuse_conn(
            &inner,
            &conn,
            "its certificate was revoked (CLUSTER FORGET)",
            b"this node was forgotten: certificate revoked",
        );
    }
    // Who is at the other end, once a verified Hello said so.
    let peer: Verified = Arc::new(tokio::sync::watch::channel(None).0);
    let mut known = peer.subscribe();
    let mut held: Vec<bytes::Bytes> = Vec::new();
    loop {
        tokio::select! {
            uni = conn.accept_uni() => match uni {
                Ok(recv) => { tokio::spawn(engine_stream(inner.clone(), recv, fp, peer.clone())); }
                Err(_) => break,
            },
            bi = conn.accept_bi() => match bi {
                Ok((send, recv)) => {
                    tokio::spawn(exchange(inner.clone(), send, recv, fp, peer.clone()));
                }
                Err(_) => break,
            },
            dg = conn.read_datagram() => match dg {
                Ok(bytes) => {
                    // Gossip from a peer cut off by a test partition is
                    // dropped (SWIM tolerates loss).
                    let who = *known.borrow();
                    match who {
                        Some(p) if !inner.is_cut(&p) => {
                            let _ = inner.cmds.send(Cmd::Gossip(bytes));
                        }
                        Some(_) => {}
                        None if held.len() < HELD_GOSSIP => held.push(bytes),
                        None => {
                            inner.stats.gossip_dropped.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!(%remote, "gossip before the peer's hello: dropped");
                        }
                    }
                }
                Err(_) => break,
            },
            // The Hello was verified: what it held may go to SWIM now.
            Ok(()) = known.changed(), if !held.is_empty() => {
                let who = *known.borrow();
                if let Some(p) = who {
                    for bytes in held.drain(..) {
                        if !inner.is_cut(&p) {
                            let _ = inner.cmds.send(Cmd::Gossip(bytes));
                        }
                    }
                }
            }
        }
    }
    if !held.is_empty() {
        // The connection ended before its peer said who it is.
        inner
            .stats
            .gossip_dropped
            .fetch_add(held.len() as u64, Ordering::Relaxed);
    }
}

/// A peer's message stream: `Hello`, then engine messages and adverts.
async fn engine_stream(
    inner: Arc<Inner>,
    mut recv: quinn::RecvStream,
    fp: trust::Fingerprint,
    peer: Verified,
) {
    let max = inner.cfg.max_frame_bytes;
    let hello = match wire::read(&mut recv, max).await {
        Ok(Some(Frame::Hello(h))) => h,
        Ok(Some(other)) => {
            return refuse(
                &inner,
                &mut recv,
                format!("stream must open with Hello, not {}", name(&other)),
            );
        }
        Ok(None) => return,
        Err(wire::WireError::Io(e)) => return tracing::debug!("peer stream ended: {e}"),
        Err(e) => return refuse(&inner, &mut recv, e.to_string()),
    };
    if let Err(why) = inner.admit(hello.node, fp) {
        return refuse(&inner, &mut recv, why);
    }
    super::link::peer_said_hello(&inner, &hello.node, hello.incarnation);
    if let Ok(mut t) = inner.table.write() {
        t.hello(&hello);
    }
    let from = hello.node;
    verified(&peer, from);
    loop {
        let frame = wire::read(&mut recv, max).await;
        if matches!(frame, Ok(Some(_))) && inner.is_cut(&from) {
            continue;
        }
        match frame {
            Ok(Some(Frame::Engine(msg))) => {
                inner.stats.frames_in.fetch_add(1, Ordering::Relaxed);
                if inner.events.send(PeerEvent::Message { from, msg }).is_err() {
                    return;
                }
            }
            Ok(Some(Frame::Tenants(records))) => {
                let changed = inner.cfg.tenants.merge(records);
                if !changed.is_empty() {
                    tracing::info!(peer = %from.short(), tenants = ?changed, "tenant records taken from a peer");
                }
            }
            Ok(Some(Frame::Schedules(records))) => {
                let changed = inner.cfg.schedules.merge(records);
                if !changed.is_empty() {
                    tracing::info!(peer = %from.short(), schedules = ?changed, "schedule records taken from a peer");
                }
            }
            Ok(Some(Frame::Admission(set))) => inner.take_admission(from, set),
            Ok(Some(Frame::CaKey(pem))) => inner.take_ca_key(from, pem),
            Ok(Some(Frame::ModuleNames(records))) => {
                let changed = inner.cfg.names.merge(records);
                if !changed.is_empty() {
                    tracing::info!(peer = %from.short(), names = ?changed, "module names taken from a peer");
                }
            }
            Ok(Some(Frame::Advert(a))) => {
                if a.admission != inner.admission.digest() && inner.ca_mode() {
                    let set = inner.admission.set();
                    super::link::send(&inner, from, super::link::Out::Frame(Frame::Admission(set)));
                }
                // A member without the CA key gets it from one that has it
                // (over this mutually verified link), so any member admits.
                if !a.can_admit && inner.ca_mode() {
                    let key = inner
                        .ca
                        .read()
                        .ok()
                        .and_then(|c| c.as_ref().and_then(|c| c.signer.clone()));
                    if let Some(key) = key {
                        super::link::send(&inner, from, super::link::Out::Frame(Frame::CaKey(key)));
                    }
                }
                if a.tenants != inner.cfg.tenants.digest() {
                    let records = inner.cfg.tenants.records();
                    super::link::send(
                        &inner,
                        from,
                        super::link::Out::Frame(Frame::Tenants(records)),
                    );
                }
                if a.schedules != inner.cfg.schedules.digest() {
                    let records = inner.cfg.schedules.records();
                    super::link::send(
                        &inner,
                        from,
                        super::link::Out::Frame(Frame::Schedules(records)),
                    );
                }
                if a.module_names != inner.cfg.names.digest() {
                    let records = inner.cfg.names.records();
                    super::link::send(
                        &inner,
                        from,
                        super::link::Out::Frame(Frame::ModuleNames(records)),
                    );
                }
                let _ = inner.events.send(PeerEvent::Load(from, a.clone()));
                let changed = match inner.table.write() {
                    Ok(mut t) => {
                        let was = t.get(&from).map(|p| p.leaving());
                        let now = a.leaving;
                        t.advert(from, a);
                        was != Some(now)
                    }
                    Err(_) => false,
                };
                if changed {
                    inner.publish_peers();
                }
            }
            Ok(Some(other)) => {
                return refuse(
                    &inner,
                    &mut recv,
                    format!("unexpected {} on a message stream", name(&other)),
                );
            }
            Ok(None) => return,
            // The peer went away (crash, restart, partition): not a fault
            // of the protocol.
            Err(wire::WireError::Io(e)) => return tracing::debug!("peer stream ended: {e}"),
            Err(e) => return refuse(&inner, &mut recv, e.to_string()),
        }
    }
}

/// One request on its own stream: the MEET handshake or a module fetch.
async fn exchange(
    inner: Arc<Inner>,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    fp: trust::Fingerprint,
    peer: Verified,
) {
    let answer = match wire::read(&mut recv, inner.cfg.max_frame_bytes).await {
        Ok(Some(Frame::Hello(h))) => match inner.admit(h.node, fp) {
            Ok(()) => {
                super::link::peer_said_hello(&inner, &h.node, h.incarnation);
                if let Ok(mut t) = inner.table.write() {
                    t.hello(&h);
                }
                verified(&peer, h.node);
                Frame::Hello(inner.hello.clone())
            }
            Err(why) => Frame::Refused(why),
        },
        Ok(Some(Frame::FetchModule(hash))) => {
            let exec = inner.executor.clone();
            let bytes = tokio::task::spawn_blocking(move || exec.module_bytes(&hash))
                .await
                .ok()
                .flatten();
            if bytes.is_some() {
                inner.stats.modules_served.fetch_add(1, Ordering::Relaxed);
            }
            Frame::Module(bytes)
        }
        Ok(Some(Frame::ModuleAsk(ask))) => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            if inner
                .events
                .send(PeerEvent::Modules { ask, reply: tx })
                .is_err()
            {
                Frame::Refused("the node is shutting down".into())
            } else {
                match rx.await {
                    Ok(a) => Frame::ModuleAnswer(a),
                    Err(_) => Frame::Refused("the node is shutting down".into()),
                }
            }
        }
        Ok(Some(other)) => Frame::Refused(format!("unexpected request {}", name(&other))),
        Ok(None) => return,
        Err(e) => {
            inner.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("peer request refused: {e}");
            Frame::Refused(e.to_string())
        }
    };
    let _ = wire::write(&mut send, &answer).await;
    let _ = send.finish();
    // Let the answer reach the peer before the stream goes away.
    let _ = send.stopped().await;
}

/// Closes a peer connection before anything is read from it: counted,
/// logged with why, and the peer told `reason`.
fn refuse_conn(inner: &Inner, conn: &quinn::Connection, why: &str, reason: &'static [u8]) {
    inner
        .stats
        .connections_refused
        .fetch_add(1, Ordering::Relaxed);
    tracing::warn!(remote = %conn.remote_address(), "peer refused: {why}");
    conn.close(1u32.into(), reason);
}

fn refuse(inner: &Inner, recv: &mut quinn::RecvStream, why: String) {
    inner.stats.streams_refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!("peer stream closed: {why}");
    let _ = recv.stop(1u32.into());
}

fn name(f: &Frame) -> &'static str {
    match f {
        Frame::Hello(_) => "Hello",
        Frame::Engine(_) => "an engine message",
        Frame::Advert(_) => "Advert",
        Frame::FetchModule(_) => "FetchModule",
        Frame::Module(_) => "Module",
        Frame::Refused(_) => "Refused",
        Frame::Tenants(_) => "Tenants",
        Frame::Schedules(_) => "Schedules",
        Frame::ModuleNames(_) => "ModuleNames",
        Frame::ModuleAsk(_) => "ModuleAsk",
        Frame::ModuleAnswer(_) => "ModuleAnswer",
        Frame::Join { .. } => "Join",
        Frame::Admission(_) => "Admission",
        Frame::CaKey(_) => "CaKey",
        Frame::Joined(_) => "Joined",
    }
}

/// A join request (join ALPN, no client certificate): checks the token's
/// secret and answers with signed credentials, or why not.
pub(super) async fn serve_join(inner: Arc<Inner>, conn: quinn::Connection) {
    let remote = conn.remote_address();
    let Ok(Ok((mut send, mut recv))) =
        tokio::time::timeout(std::time::Duration::from_secs(10), conn.accept_bi()).await
    else {
        return;
    };
    let answer = match wire::read(&mut recv, 64 << 10).await {
        Ok(Some(Frame::Join { secret, node })) => {
            let ca = inner.ca.read().ok().and_then(|c| c.clone());
            match ca {
                None => Frame::Refused(
                    "this node has no cluster CA (loopback trust mode): run `wasque cluster init` on it first".into(),
                ),
                Some(ca) => match super::ca::sign_join(
                    &ca,
                    &inner.admission,
                    &secret,
                    &node,
                    crate::runtime::now_ms(),
                ) {
                    Ok(j) => {
                        tracing::info!(%remote, node = %node, "join accepted: certificate issued");
                        Frame::Joined(j)
                    }
                    Err(why) => {
                        inner.stats.connections_refused.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(%remote, "{why}");
                        Frame::Refused(why)
                    }
                },
            }
        }
        Ok(_) => Frame::Refused("expected a join request".into()),
        Err(e) => Frame::Refused(e.to_string()),
    };
    let _ = wire::write(&mut send, &answer).await;
    let _ = send.finish();
    let _ = send.stopped().await;
}
