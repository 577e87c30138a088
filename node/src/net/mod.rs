//! The node's network front doors and its TLS identity.
//!
//! - [`identity`]: the node's CA and certificate (created on first start).
//! - [`quic`]: the QUIC endpoint: the client protocol (ALPN `wasque/1`);
//!   peers (ALPN `wasque-peer/1`) come with the cluster.

pub mod identity;
pub mod quic;
