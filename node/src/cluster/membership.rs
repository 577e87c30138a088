//! The membership task: runs foca (SWIM) over the links, answers MEET,
//! FORGET and RESET, and sends this node's capacity advert to its live
//! peers every second. Membership changes go to the driver as the list of
//! peers that take jobs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use foca::{AccumulatingRuntime, Foca, OwnedNotification, PostcardCodec, Timer};
use rand10::SeedableRng;
use rand10::rngs::SmallRng;
use tokio::sync::{mpsc, oneshot, watch};

use super::link::{self, Out};
use super::wire::Frame;
use super::{Cluster, ClusterError, Inner, Member};
use crate::job::NodeName;

/// A forgotten node is not taken back from gossip for this long.
const FORGET_BAN: Duration = Duration::from_secs(60);

type Swim = Foca<Member, PostcardCodec, SmallRng, foca::NoCustomBroadcast>;
type Reply = Option<oneshot::Sender<Result<NodeName, ClusterError>>>;

pub(super) enum Cmd {
    Gossip(Bytes),
    /// A foca timer, with the generation of the foca instance that set it:
    /// a timer of an instance since replaced is dropped.
    Timer(u64, Timer<Member>),
    /// `CONFIG SET cluster-node-timeout`.
    NodeTimeout(Duration),
    Meet(SocketAddr, Reply),
    Announce(Member, Reply),
    Forget(NodeName),
    Reset,
}

fn swim_config(node_timeout: Duration) -> foca::Config {
    let mut c = foca::Config::new_lan(NonZeroU32::new(8).expect("8 > 0"));
    let probe = (node_timeout / 8).clamp(Duration::from_millis(100), Duration::from_secs(1));
    c.probe_period = probe;
    c.probe_rtt = probe / 2;
    c.suspect_to_down_after = (node_timeout / 2).max(probe * 2);
    // QUIC datagrams on loopback hold a little over 1,200 bytes.
    c.max_packet_size = std::num::NonZeroUsize::new(1_100).expect("1100 > 0");
    // After a partition heals both sides must find each other again soon:
    // keep down members for a day and keep announcing to them.
    c.remove_down_after = Some(Duration::from_secs(86_400));
    let every = node_timeout.max(Duration::from_secs(1));
    c.periodic_announce_to_down_members = Some(foca::PeriodicParams {
        frequency: every,
        num_members: std::num::NonZeroUsize::new(2).expect("2 > 0"),
    });
    c.periodic_announce = Some(foca::PeriodicParams {
        frequency: every * 4,
        num_members: std::num::NonZeroUsize::new(1).expect("1 > 0"),
    });
    c
}

fn new_swim(inner: &Inner) -> Swim {
    let me = Member {
        node: inner.hello.node,
        addr: inner.hello.addr,
        incarnation: inner.hello.incarnation,
    };
    Foca::new(
        me,
        swim_config(inner.node_timeout()),
        SmallRng::seed_from_u64(rand::random()),
        PostcardCodec,
    )
}

pub(super) async fn run(
    cluster: Cluster,
    mut cmds: mpsc::UnboundedReceiver<Cmd>,
    mut stop: watch::Receiver<bool>,
) {
    let inner = cluster.inner.clone();
    let mut swim = new_swim(&inner);
    // Bumped whenever `swim` is replaced, so timers of the one before
    // (tagged with its generation) cannot drive the new one twice.
    let mut generation: u64 = 0;
    let mut rt = AccumulatingRuntime::new();
    let mut banned: HashMap<NodeName, Instant> = HashMap::new();
    let mut targets = inner.cfg.joins.clone();
    for p in saved_peers(&inner) {
        if !targets.contains(&p) {
            targets.push(p);
        }
    }
    for j in targets {
        tokio::spawn(join(inner.clone(), j));
    }
    let mut adverts = tokio::time::interval(Duration::from_secs(1));
    adverts.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = stop.changed() => {
                let _ = swim.leave_cluster(&mut rt);
                flush(&inner, &mut rt, &mut banned, generation);
                break;
            }
            cmd = cmds.recv() => {
                let Some(cmd) = cmd else { break };
                match cmd {
                    Cmd::Gossip(b) => {
                        if let Err(e) = swim.handle_data(&b, &mut rt) {
                            tracing::debug!("gossip dropped: {e}");
                        }
                    }
                    Cmd::Timer(g, t) => {
                        if g == generation {
                            let _ = swim.handle_timer(t, &mut rt);
                        }
                    }
                    Cmd::NodeTimeout(timeout) => {
                        let config = swim_config(timeout);
                        if swim.set_config(config).is_err() {
                            // foca keeps its probe period for life: a new
                            // instance with the new timing takes over what
                            // this one knows of every member.
                            let mut next = new_swim(&inner);
                            let known: Vec<_> = swim.iter_membership_state().cloned().collect();
                            generation += 1;
                            if let Err(e) = next.apply_many(known.into_iter(), false, &mut rt) {
                                tracing::warn!("node timeout change: members not carried over: {e}");
                            }
                            swim = next;
                        }
                        tracing::info!(timeout_ms = timeout.as_millis() as u64, "cluster-node-timeout changed");
                    }
                    Cmd::Meet(addr, reply) => {
                        tokio::spawn(meet(inner.clone(), addr, reply));
                    }
                    Cmd::Announce(m, reply) => {
                        banned.remove(&m.node);
                        let node = m.node;
                        let r = swim
                            .announce(m, &mut rt)
                            .map(|_| node)
                            .map_err(|e| ClusterError::Refused(e.to_string()));
                        if let Some(reply) = reply {
                            let _ = reply.send(r);
                        }
                    }
                    Cmd::Forget(node) => {
                        banned.insert(node, Instant::now());
                        link::drop_link(&inner, &node);
                        inner.publish_peers();
                        save_peers(&inner);
                    }
                    Cmd::Reset => {
                        let _ = swim.leave_cluster(&mut rt);
                        flush(&inner, &mut rt, &mut banned, generation);
                        rt = AccumulatingRuntime::new();
                        generation += 1;
                        if let Ok(mut t) = inner.table.write() {
                            t.clear();
                        }
                        inner.pins.clear();
                        inner.links.lock().unwrap_or_else(|p| p.into_inner()).clear();
                        swim = new_swim(&inner);
                        inner.publish_peers();
                        save_peers(&inner);
                        tracing::info!("cluster reset: every peer forgotten");
                    }
                }
            }
            _ = adverts.tick() => send_advert(&inner),
        }
        flush(&inner, &mut rt, &mut banned, generation);
        sync_suspects(&inner, &swim);
    }
}

/// Sends this node's advert, with the digests of the shared tables as
/// they are now, to every live peer.
pub(super) fn send_advert(inner: &Arc<Inner>) {
    let mut advert = inner.advert.read().map(|a| a.clone()).unwrap_or_default();
    advert.tenants = inner.cfg.tenants.digest();
    advert.schedules = inner.cfg.schedules.digest();
    advert.admission = inner.admission.digest();
    advert.can_admit = inner.can_admit();
    advert.module_names = inner.cfg.names.digest();
    let up = inner.table.read().map(|t| t.up()).unwrap_or_default();
    for n in up {
        link::send(inner, n, Out::Frame(Frame::Advert(advert.clone())));
    }
}

/// Copies SWIM's suspicions into the peer table (the HTTP cluster view
/// shows them as `suspect`). Takes the write lock only when they changed.
fn sync_suspects(inner: &Inner, swim: &Swim) {
    let suspects: Vec<NodeName> = swim
        .iter_members()
        .filter(|m| m.state() == foca::State::Suspect)
        .map(|m| m.id().node)
        .collect();
    let same = inner
        .table
        .read()
        .map(|t| t.suspects_are(&suspects))
        .unwrap_or(true);
    if !same && let Ok(mut t) = inner.table.write() {
        t.set_suspects(&suspects);
        drop(t);
        inner.members_changed();
    }
}

/// Carries out what foca asked for: datagrams, timers, notifications.
fn flush(
    inner: &Arc<Inner>,
    rt: &mut AccumulatingRuntime<Member>,
    banned: &mut HashMap<NodeName, Instant>,
    generation: u64,
) {
    while let Some((to, data)) = rt.to_send() {
        // SWIM may still name a forgotten (revoked) node: it stays out.
        if inner.admission.is_revoked_node(&to.node) {
            continue;
        }
        if let Ok(mut t) = inner.table.write() {
            t.learn(to.node, to.addr, to.incarnation);
        }
        link::send(inner, to.node, Out::Gossip(data));
    }
    while let Some((after, timer)) = rt.to_schedule() {
        let cmds = inner.cmds.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = cmds.send(Cmd::Timer(generation, timer));
        });
    }
    banned.retain(|_, at| at.elapsed() < FORGET_BAN);
    let mut changed = false;
    while let Some(n) = rt.to_notify() {
        match n {
            OwnedNotification::MemberUp(m) | OwnedNotification::Rename(_, m) => {
                if banned.contains_key(&m.node) || inner.admission.is_revoked_node(&m.node) {
                    continue;
                }
                tracing::info!(peer = %m.node.short(), addr = %m.addr, "peer up");
                if let Ok(mut t) = inner.table.write() {
                    t.learn(m.node, m.addr, m.incarnation);
                    t.set_up(m.node, true);
                }
                changed = true;
            }
            OwnedNotification::MemberDown(m) => {
                let newer_up = inner
                    .table
                    .read()
                    .ok()
                    .and_then(|t| t.get(&m.node).map(|p| p.incarnation > m.incarnation))
                    .unwrap_or(false);
                if newer_up {
                    // The node restarted: its new incarnation is what counts.
                    continue;
                }
                tracing::warn!(peer = %m.node.short(), addr = %m.addr, "peer down");
                if let Ok(mut t) = inner.table.write() {
                    t.set_up(m.node, false);
                }
                link::drop_link(inner, &m.node);
                changed = true;
            }
            _ => {}
        }
    }
    if changed {
        inner.publish_peers();
        save_peers(inner);
    }
}

/// Writes the known peers' addresses (`node addr` lines) for the next
/// start; best effort: a node that cannot write it still runs.
fn save_peers(inner: &Inner) {
    let Some(path) = &inner.cfg.peers_file else {
        return;
    };
    let text: String = inner
        .table
        .read()
        .map(|t| {
            t.view()
                .iter()
                .map(|p| format!("{} {}\n", p.node, p.addr))
                .collect()
        })
        .unwrap_or_default();
    let tmp = path.with_extension("tmp");
    if let Err(e) = std::fs::write(&tmp, text).and_then(|_| std::fs::rename(&tmp, path)) {
        tracing::warn!(file = %path.display(), "cannot save the peer list: {e}");
    }
}

/// How many peers an earlier run saved.
pub(super) fn saved_peer_count(inner: &Inner) -> usize {
    saved_peers(inner).len()
}

/// The peer addresses saved by an earlier run.
fn saved_peers(inner: &Inner) -> Vec<String> {
    let Some(path) = &inner.cfg.peers_file else {
        return vec![];
    };
    std::fs::read_to_string(path)
        .map(|t| {
            t.lines()
                .filter_map(|l| l.split_whitespace().nth(1))
                .filter(|a| a.parse::<SocketAddr>().is_ok_and(|a| a != inner.hello.addr))
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// MEET: the handshake tells us who is at `addr`; then SWIM announces us.
async fn meet(inner: Arc<Inner>, addr: SocketAddr, reply: Reply) {
    if let Err(why) = may_meet(&inner, &addr) {
        tracing::warn!(%addr, "{why}");
        if let Some(r) = reply {
            let _ = r.send(Err(ClusterError::Refused(why)));
        }
        return;
    }
    if addr == inner.hello.addr {
        if let Some(r) = reply {
            let _ = r.send(Err(ClusterError::Refused(
                "that is this node's own address".into(),
            )));
        }
        return;
    }
    let answer = link::request(&inner, addr, None, Frame::Hello(inner.hello.clone())).await;
    match answer {
        Ok(Frame::Hello(h)) => {
            if let Ok(mut t) = inner.table.write() {
                t.hello(&h);
            }
            let m = Member {
                node: h.node,
                addr: h.addr,
                incarnation: h.incarnation,
            };
            let _ = inner.cmds.send(Cmd::Announce(m, reply));
        }
        Ok(other) => {
            if let Some(r) = reply {
                let _ = r.send(Err(ClusterError::Refused(format!(
                    "{addr} answered the handshake with {other:?}"
                ))));
            }
        }
        Err(e) => {
            if let Some(r) = reply {
                let _ = r.send(Err(e));
            }
        }
    }
}

/// Loopback trust mode pins a peer's certificate at first contact (trust
/// on first use): safe between processes of one host, not across a
/// network where the first contact may be an impostor's. So an address
/// beyond loopback is met only in `ca` trust mode.
pub(super) fn may_meet(inner: &Inner, addr: &SocketAddr) -> Result<(), String> {
    if inner.ca_mode() || super::is_loopback(addr) {
        return Ok(());
    }
    Err(format!(
        "cannot meet {addr}: this node is in loopback trust mode, which pins peers on first use and is safe on one host only; for nodes on other hosts run `wasque cluster init` here and start them with --join-token (ca trust mode)"
    ))
}

/// `--join HOST:PORT`: meets the address, retrying for a while (the peer
/// may be starting too).
async fn join(inner: Arc<Inner>, target: String) {
    for attempt in 0..30u32 {
        let addrs: Vec<SocketAddr> = match tokio::net::lookup_host(&target).await {
            Ok(a) => a.collect(),
            Err(e) => {
                tracing::warn!(%target, "cannot resolve join address: {e}");
                vec![]
            }
        };
        for addr in addrs {
            let (tx, rx) = oneshot::channel();
            let _ = inner.cmds.send(Cmd::Meet(addr, Some(tx)));
            match rx.await {
                Ok(Ok(node)) => {
                    tracing::info!(%addr, peer = %node.short(), "joined");
                    return;
                }
                Ok(Err(e)) => tracing::debug!(%addr, attempt, "join attempt failed: {e}"),
                Err(_) => return,
            }
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tracing::warn!(%target, "could not join: no answer after 30 attempts");
}
