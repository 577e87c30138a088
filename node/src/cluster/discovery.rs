//! What a client learns when it asks a node for the cluster (`Nodes`):
//! every node with its address, state and load, and the CA each node's
//! clients trust. A client that trusts the node it asked can trust those
//! CAs: the node learned each from the peer itself, over a peer link
//! authenticated by the cluster CA (ca mode) or by the certificate pinned
//! at MEET (loopback mode).

use wasque_sdk::proto::{ClusterNode, NodeState};

use super::Cluster;

/// The cluster as this node sees it, this node first.
pub fn nodes(cluster: &Cluster) -> Vec<ClusterNode> {
    let mine = cluster.advert();
    let mut out = vec![ClusterNode {
        id: cluster.me().to_string(),
        addr: cluster.addr().to_string(),
        state: if cluster.leaving() {
            NodeState::Leaving
        } else {
            NodeState::Up
        },
        myself: true,
        exec_slots: mine.exec_slots,
        exec_busy: mine.exec_busy,
        queued: mine.queued,
        jobs: mine.jobs,
        ca_pem: Some(cluster.client_ca_pem().to_string()),
    }];
    for p in cluster.peers() {
        let a = p.advert.unwrap_or_default();
        out.push(ClusterNode {
            id: p.node.to_string(),
            addr: p.addr.to_string(),
            state: match (p.up, p.leaving) {
                (false, _) => NodeState::Down,
                (true, true) => NodeState::Leaving,
                (true, false) => NodeState::Up,
            },
            myself: false,
            exec_slots: a.exec_slots,
            exec_busy: a.exec_busy,
            queued: a.queued,
            jobs: a.jobs,
            ca_pem: p.client_ca_pem,
        });
    }
    out
}
