//! CLUSTER MEET / NODES / INFO / FORGET / LEAVING / RESET, as Disque has
//! them. Answered from the cluster layer's peer table; MEET answers `+OK`
//! at once and meets in the background, as Disque and Redis do (watch
//! `CLUSTER NODES` for the result; failures are logged).

use std::net::{IpAddr, SocketAddr};

use super::{Action, Args, wrong_arity};
use crate::job::NodeName;
use crate::net::resp::frame::Frame;
use crate::runtime::Handle;

#[derive(Debug)]
pub enum ClusterCmd {
    /// wasque: make a cluster CA here (ca trust mode); answers the token.
    Init,
    Meet(SocketAddr),
    Nodes,
    Info,
    Forget(NodeName),
    Leaving(Option<bool>),
    ResetHard,
    /// `DEBUG PARTITION id...` (test nodes only): drop all traffic with
    /// these nodes; `DEBUG HEAL` ends it.
    Partition(Vec<NodeName>),
    Heal,
}

/// `DEBUG PARTITION node-id...` and `DEBUG HEAL`, for fault tests.
pub fn parse_debug(a: &Args) -> Option<Result<Action, Frame>> {
    if a.is(1, "heal") && a.len() == 2 {
        return Some(Ok(Action::Cluster(ClusterCmd::Heal)));
    }
    if !a.is(1, "partition") {
        return None;
    }
    if a.len() < 3 {
        return Some(Err(wrong_arity("debug")));
    }
    let mut nodes = Vec::new();
    for i in 2..a.len() {
        let id = match a.text(i) {
            Ok(t) => t,
            Err(f) => return Some(Err(f)),
        };
        match NodeName::from_hex(&id) {
            Some(n) => nodes.push(n),
            None => {
                return Some(Err(Frame::error(
                    "ERR",
                    &format!("Unknown node {id}: a node id is 40 hex digits"),
                )));
            }
        }
    }
    Some(Ok(Action::Cluster(ClusterCmd::Partition(nodes))))
}

pub fn parse(a: &Args) -> Result<Action, Frame> {
    let sub = String::from_utf8_lossy(a.get(1)).to_ascii_lowercase();
    let c = match (sub.as_str(), a.len()) {
        ("meet", 4) => {
            let ip: IpAddr = a
                .text(2)?
                .parse()
                .map_err(|_| Frame::error("ERR", "Invalid node address specified"))?;
            let port: u16 = a
                .text(3)?
                .parse()
                .map_err(|_| Frame::error("ERR", "Invalid TCP port specified"))?;
            ClusterCmd::Meet(SocketAddr::new(ip, port))
        }
        ("nodes", 2) => ClusterCmd::Nodes,
        ("init", 2) => ClusterCmd::Init,
        ("info", 2) => ClusterCmd::Info,
        ("forget", 3) => {
            let id = a.text(2)?;
            let node = NodeName::from_hex(&id).ok_or_else(|| {
                Frame::error(
                    "ERR",
                    &format!("Unknown node {id}: a node id is 40 hex digits"),
                )
            })?;
            ClusterCmd::Forget(node)
        }
        ("leaving", 2) => ClusterCmd::Leaving(None),
        ("leaving", 3) => match a.text(2)?.to_ascii_lowercase().as_str() {
            "yes" => ClusterCmd::Leaving(Some(true)),
            "no" => ClusterCmd::Leaving(Some(false)),
            _ => return Err(Frame::error("ERR", "CLUSTER LEAVING takes yes or no")),
        },
        ("reset", 3) if a.is(2, "hard") => ClusterCmd::ResetHard,
        ("reset", _) => return Err(Frame::error("ERR", "CLUSTER RESET takes HARD")),
        ("meet" | "nodes" | "info" | "forget" | "leaving", _) => {
            return Err(wrong_arity("cluster"));
        }
        _ => {
            return Err(Frame::error(
                "ERR",
                "CLUSTER subcommand must be one of MEET, NODES, INFO, FORGET, LEAVING, RESET, INIT",
            ));
        }
    };
    Ok(Action::Cluster(c))
}

/// Carries out a CLUSTER command; every one answers at once.
pub fn run(handle: &Handle, c: ClusterCmd) -> Frame {
    let cluster = handle.cluster();
    match c {
        ClusterCmd::Meet(addr) => {
            if let Err(e) = cluster.may_meet(&addr) {
                return Frame::error("ERR", &e.to_string());
            }
            let cluster = cluster.clone();
            tokio::spawn(async move {
                match cluster.meet(addr).await {
                    Ok(node) => tracing::info!(%addr, peer = %node.short(), "met"),
                    Err(e) => tracing::warn!(%addr, "CLUSTER MEET failed: {e}"),
                }
            });
            Frame::Simple("OK".into())
        }
        ClusterCmd::Nodes => Frame::text(&nodes_text(handle)),
        ClusterCmd::Init => match cluster.init_ca() {
            Ok(token) => Frame::text(&token),
            Err(e) => Frame::error("ERR", &e.to_string()),
        },
        ClusterCmd::Info => Frame::text(&info_text(handle)),
        ClusterCmd::Forget(node) if node == cluster.me() => {
            Frame::error("ERR", "I tried hard but I can't forget myself...")
        }
        ClusterCmd::Forget(node) => {
            if cluster.forget(node) {
                Frame::Simple("OK".into())
            } else {
                Frame::error("ERR", &format!("Unknown node {node}"))
            }
        }
        ClusterCmd::Leaving(None) => Frame::text(if cluster.leaving() { "yes" } else { "no" }),
        ClusterCmd::Leaving(Some(on)) => {
            handle.set_leaving(on);
            Frame::Simple("OK".into())
        }
        ClusterCmd::ResetHard => {
            cluster.reset();
            Frame::Simple("OK".into())
        }
        ClusterCmd::Partition(nodes) => {
            tracing::warn!(nodes = nodes.len(), "DEBUG PARTITION: cut off from peers");
            cluster.partition(&nodes);
            Frame::Simple("OK".into())
        }
        ClusterCmd::Heal => {
            cluster.heal();
            Frame::Simple("OK".into())
        }
    }
}

/// One line per node: `id addr flags advert-age-ms state link slots queued
/// jobs`, this node first (flag `myself`).
pub fn nodes_text(handle: &Handle) -> String {
    let cluster = handle.cluster();
    let mine = cluster.advert();
    let mut out = format!(
        "{} {} myself{} 0 0 connected exec={}/{} queued={} jobs={}\n",
        cluster.me(),
        cluster.addr(),
        if cluster.leaving() { ",leaving" } else { "" },
        mine.exec_busy,
        mine.exec_slots,
        mine.queued,
        mine.jobs,
    );
    for p in cluster.peers() {
        // Redis's flags: `pfail` suspected, `fail` declared down.
        let mut flags = vec![match (p.up, p.suspect) {
            (false, _) => "fail",
            (true, true) => "pfail",
            (true, false) => "noflags",
        }];
        if p.leaving {
            flags.push("leaving");
        }
        let (busy, slots, queued, jobs) = p.advert.as_ref().map_or((0, 0, 0, 0), |a| {
            (a.exec_busy, a.exec_slots, a.queued, a.jobs)
        });
        out.push_str(&format!(
            "{} {} {} {} 0 {} exec={busy}/{slots} queued={queued} jobs={jobs}\n",
            p.node,
            p.addr,
            flags.join(","),
            p.advert_age_ms.unwrap_or(0),
            if p.up { "connected" } else { "disconnected" },
        ));
    }
    out
}

/// `CLUSTER INFO`. `cluster_reachable_nodes` counts as Disque does: the
/// other nodes that are up, neither suspected nor leaving (this node is
/// not counted).
pub fn info_text(handle: &Handle) -> String {
    let peers = handle.cluster().peers();
    let reachable = peers
        .iter()
        .filter(|p| p.up && !p.suspect && !p.leaving)
        .count();
    format!(
        "cluster_state:ok\r\ncluster_known_nodes:{}\r\ncluster_reachable_nodes:{}\r\ncluster_leaving:{}\r\ncluster_trust:{}\r\ncluster_gossip_dropped:{}\r\n",
        peers.len() + 1,
        reachable,
        if handle.cluster().leaving() {
            "yes"
        } else {
            "no"
        },
        handle.cluster().trust_mode(),
        handle
            .cluster()
            .stats()
            .gossip_dropped
            .load(std::sync::atomic::Ordering::Relaxed),
    )
}
