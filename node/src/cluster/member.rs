//! A cluster member as SWIM (foca) knows it: the node id, where to reach
//! it, and an incarnation that changes at every start, so a node that
//! restarts rejoins as a fresh member instead of fighting its old self.

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

use crate::job::NodeName;

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Member {
    pub node: NodeName,
    pub addr: SocketAddr,
    pub incarnation: u64,
}

impl foca::Identity for Member {
    /// Two members with the same node id are the same node.
    type Addr = NodeName;

    fn renew(&self) -> Option<Self> {
        Some(Member {
            incarnation: self.incarnation + 1,
            ..self.clone()
        })
    }

    fn addr(&self) -> NodeName {
        self.node
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        self.incarnation > adversary.incarnation
    }
}
