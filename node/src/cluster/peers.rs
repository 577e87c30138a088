//! The peer table: every node this one knows, where it is, whether SWIM
//! sees it alive (and whether it is suspected), and its last capacity
//! advert. Read by `CLUSTER NODES`, `HELLO`, `INFO` and the HTTP cluster
//! view; written by the membership task and by adverts.

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
    /// SWIM suspects it (a probe went unanswered) but has not declared it
    /// down; it still counts as up.
    pub suspect: bool,
    pub advert: Option<Advert>,
    pub advert_at: Option<Instant>,
    /// PEM of the CA of its client-facing certificate (from its `Hello`).
    pub client_ca_pem: Option<String>,
}

/// Longest version string kept from a peer's advert.
pub const MAX_VERSION_LEN: usize = 128;

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
    /// Up, but suspected by SWIM (see [`Peer::suspect`]).
    pub suspect: bool,
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
            suspect: false,
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
            p.suspect = false;
        }
    }

    /// Whether the suspected peers are exactly `suspects` (a cheap check
    /// under the read lock before [`PeerTable::set_suspects`]).
    pub fn suspects_are(&self, suspects: &[NodeName]) -> bool {
        self.peers
            .iter()
            .all(|(n, p)| p.suspect == (p.up && suspects.contains(n)))
    }

    /// Marks the peers SWIM suspects now (up ones only); clears the rest.
    pub fn set_suspects(&mut self, suspects: &[NodeName]) {
        for (n, p) in self.peers.iter_mut() {
            p.suspect = p.up && suspects.contains(n);
        }
    }

    pub fn advert(&mut self, node: NodeName, mut a: Advert) {
        if a.version.len() > MAX_VERSION_LEN {
            let mut end = MAX_VERSION_LEN;
            while !a.version.is_char_boundary(end) {
                end -= 1;
            }
            a.version.truncate(end);
        }
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
                suspect: p.suspect,
                leaving: p.leaving(),
                advert: p.advert.clone(),
                advert_age_ms: p.advert_at.map(|t| t.elapsed().as_millis() as u64),
                client_ca_pem: p.client_ca_pem.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suspects_are_up_peers_only_and_a_long_version_is_cut() {
        let (a, b) = (NodeName([1; 20]), NodeName([2; 20]));
        let addr: SocketAddr = "127.0.0.1:7711".parse().expect("addr");
        let mut t = PeerTable::default();
        t.learn(a, addr, 1);
        t.learn(b, addr, 1);
        t.set_up(a, true);
        assert!(t.suspects_are(&[]));
        assert!(!t.suspects_are(&[a]));
        t.set_suspects(&[a, b]);
        // b is not up: SWIM's suspicion of it does not count.
        assert!(t.suspects_are(&[a]));
        let v = t.view();
        assert!(v[0].suspect && !v[1].suspect);
        // Declared down: no longer suspect.
        t.set_up(a, false);
        assert!(!t.view()[0].suspect);

        t.advert(
            a,
            Advert {
                version: "é".repeat(100),
                ..Advert::default()
            },
        );
        let version = t.view()[0].advert.clone().expect("advert").version;
        assert!(version.len() <= MAX_VERSION_LEN && version.starts_with('é'));
    }
}
