//! The peer table: every node this one knows, where it is, whether SWIM
//! sees it alive, and its last capacity advert. Read by `CLUSTER NODES`,
//! `HELLO` and `INFO`; written by the membership task and by adverts.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Instant;

use super::wire::Advert;
use crate::job::NodeName;

/// One known peer.
#[derive(Clone, Debug)]
pub struct Peer {
    pub addr: SocketAddr,
    pub incarnation: u64,
    pub up: bool,
    pub advert: Option<Advert>,
    pub advert_at: Option<Instant>,
    /// PEM of the CA of its client-facing certificate (from its `Hello`).
    pub client_ca_pem: Option<String>,
}

impl Peer {
    pub fn leaving(&self) -> bool {
        self.advert.as_ref().is_some_and(|a| a.leaving)
    }
}

/// A peer as shown to users.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerView {
    pub node: NodeName,
    pub addr: SocketAddr,
    pub up: bool,
    pub leaving: bool,
    pub advert: Option<Advert>,
    /// Milliseconds since its last advert.
    pub advert_age_ms: Option<u64>,
    pub client_ca_pem: Option<String>,
}

#[derive(Debug, Default)]
pub struct PeerTable {
    peers: BTreeMap<NodeName, Peer>,
}

impl PeerTable {
    /// Learns (or refreshes) where a node is.
    pub fn learn(&mut self, node: NodeName, addr: SocketAddr, incarnation: u64) {
        let p = self.peers.entry(node).or_insert(Peer {
            addr,
            incarnation,
            up: false,
            advert: None,
            advert_at: None,
            client_ca_pem: None,
        });
        if incarnation >= p.incarnation {
            p.addr = addr;
            p.incarnation = incarnation;
        }
    }

    /// Learns a node from its own `Hello`: where it is and the CA its
    /// clients trust.
    pub fn hello(&mut self, h: &super::wire::Hello) {
        self.learn(h.node, h.addr, h.incarnation);
        if let Some(p) = self.peers.get_mut(&h.node) {
            p.client_ca_pem = Some(h.client_ca_pem.clone());
        }
    }

    pub fn set_up(&mut self, node: NodeName, up: bool) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.up = up;
        }
    }

    pub fn advert(&mut self, node: NodeName, a: Advert) {
        if let Some(p) = self.peers.get_mut(&node) {
            p.advert = Some(a);
            p.advert_at = Some(Instant::now());
        }
    }

    pub fn addr_of(&self, node: &NodeName) -> Option<SocketAddr> {
        self.peers.get(node).map(|p| p.addr)
    }

    pub fn get(&self, node: &NodeName) -> Option<&Peer> {
        self.peers.get(node)
    }

    pub fn forget(&mut self, node: &NodeName) -> bool {
        self.peers.remove(node).is_some()
    }

    pub fn clear(&mut self) {
        self.peers.clear();
    }

    /// Live peers that take new jobs (replication and federation targets).
    pub fn targets(&self) -> Vec<NodeName> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up && !p.leaving())
            .map(|(n, _)| *n)
            .collect()
    }

    pub fn up(&self) -> Vec<NodeName> {
        self.peers
            .iter()
            .filter(|(_, p)| p.up)
            .map(|(n, _)| *n)
            .collect()
    }

    pub fn view(&self) -> Vec<PeerView> {
        self.peers
            .iter()
            .map(|(n, p)| PeerView {
                node: *n,
                addr: p.addr,
                up: p.up,
                leaving: p.leaving(),
                advert: p.advert.clone(),
                advert_age_ms: p.advert_at.map(|t| t.elapsed().as_millis() as u64),
                client_ca_pem: p.client_ca_pem.clone(),
            })
            .collect()
    }
}
