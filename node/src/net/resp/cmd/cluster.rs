//! CLUSTER MEET / NODES / INFO / FORGET / LEAVING / RESET, as Disque has
//! them. Answered from the cluster layer's peer table; MEET answers `+OK`
//! at once and meets in the background, as Disque and Redis do (watch
//! `CLUSTER NODES` for the result; failures are logged).
//!
//! wasque adds, for `ca` trust mode: `CLUSTER INIT` (make the cluster CA)
//! and `CLUSTER TOKEN CREATE [TTL secs] | LIST | REVOKE id|ALL | ROTATE
//! [TTL secs]` (join tokens, the same on every member). There, `CLUSTER
//! FORGET` revokes: every member refuses the node from then on.

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
    Token(TokenCmd),
}

/// `CLUSTER TOKEN ...`: join tokens of a ca cluster.
#[derive(Debug)]
pub enum TokenCmd {
    /// A new token, valid for the seconds given (or until revoked).
    Create(Option<u64>),
    List,
    /// Revoke one token by id, or `ALL`.
    Revoke(String),
    /// Revoke every token and make a new one.
    Rotate(Option<u64>),
}

/// Longest a token may be made valid for: ten years.
const MAX_TOKEN_TTL_SECS: u64 = 10 * 365 * 24 * 3600;

fn ttl(a: &Args, i: usize) -> Result<Option<u64>, Frame> {
    if a.len() <= i {
        return Ok(None);
    }
    if !a.is(i, "ttl") || a.len() != i + 2 {
        return Err(Frame::error(
            "ERR",
            "CLUSTER TOKEN CREATE|ROTATE takes an optional TTL <seconds>",
        ));
    }
    match a.int(i + 1)? {
        s if s >= 1 && s as u64 <= MAX_TOKEN_TTL_SECS => Ok(Some(s as u64)),
        _ => Err(Frame::error(
            "ERR",
            &format!("TTL is 1 to {MAX_TOKEN_TTL_SECS} seconds"),
        )),
    }
}

fn parse_token(a: &Args) -> Result<TokenCmd, Frame> {
    let sub = String::from_utf8_lossy(a.get(2)).to_ascii_lowercase();
    Ok(match (sub.as_str(), a.len()) {
        ("create", _) => TokenCmd::Create(ttl(a, 3)?),
        ("rotate", _) => TokenCmd::Rotate(ttl(a, 3)?),
        ("list", 3) => TokenCmd::List,
        ("revoke", 4) => TokenCmd::Revoke(a.text(3)?),
        _ => {
            return Err(Frame::error(
                "ERR",
                "CLUSTER TOKEN takes CREATE [TTL secs], LIST, REVOKE id|ALL or ROTATE [TTL secs]",
            ));
        }
    })
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
        ("token", n) if n >= 3 => ClusterCmd::Token(parse_token(a)?),
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
        ("meet" | "nodes" | "info" | "forget" | "leaving" | "token", _) => {
            return Err(wrong_arity("cluster"));
        }
        _ => {
            return Err(Frame::error(
                "ERR",
                "CLUSTER subcommand must be one of MEET, NODES, INFO, FORGET, LEAVING, RESET, INIT, TOKEN",
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
        ClusterCmd::Token(t) => run_token(handle, t),
    }
}

fn run_token(handle: &Handle, t: TokenCmd) -> Frame {
    let cluster = handle.cluster();
    let secs = |s: Option<u64>| s.map(std::time::Duration::from_secs);
    let made = match t {
        TokenCmd::Create(ttl) => cluster.create_token(secs(ttl)),
        TokenCmd::Rotate(ttl) => cluster
            .revoke_token("all")
            .and_then(|_| cluster.create_token(secs(ttl))),
        TokenCmd::Revoke(id) => {
            return match cluster.revoke_token(&id) {
                Ok(n) => Frame::Integer(n as i64),
                Err(e) => Frame::error("ERR", &e.to_string()),
            };
        }
        TokenCmd::List => return Frame::text(&tokens_text(handle)),
    };
    match made {
        Ok(token) => Frame::text(&token),
        Err(e) => Frame::error("ERR", &e.to_string()),
    }
}

/// One line per join token: `id state created=UNIX expires=UNIX|never`
/// (seconds), oldest first.
pub fn tokens_text(handle: &Handle) -> String {
    let now = crate::runtime::now_ms();
    let mut out = String::new();
    for t in handle.cluster().admission().tokens() {
        let expires = if t.expires_ms == 0 {
            "never".to_string()
        } else {
            (t.expires_ms / 1000).to_string()
        };
        out.push_str(&format!(
            "{} {} created={} expires={expires}\n",
            t.id,
            t.state(now),
            t.created_ms / 1000,
        ));
    }
    out
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
        "cluster_state:ok\r\ncluster_known_nodes:{}\r\ncluster_reachable_nodes:{}\r\ncluster_leaving:{}\r\ncluster_trust:{}\r\ncluster_gossip_dropped:{}\r\ncluster_can_admit:{}\r\ncluster_forgotten_nodes:{}\r\n",
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
        if handle.cluster().can_admit() {
            "yes"
        } else {
            "no"
        },
        handle.cluster().admission().revoked().len(),
    )
}
