//! The node's network front doors and its TLS identity.
//!
//! - [`announce`]: the address peers and clients are told to reach the
//!   node at (announced, bound, or found when bound to 0.0.0.0).
//! - [`identity`]: the node's CA and certificate (created on first start).
//! - [`quic`]: the QUIC endpoint: the client protocol (ALPN `wasque/1`);
//!   peers (ALPN `wasque-peer/1`) come with the cluster.
//! - [`resp`]: RESP2 over TCP on the node's port: Disque's commands for
//!   `redis-cli` and Disque clients.
//! - [`http`]: the read-only JSON API, `/metrics`, health, the event feed
//!   and the dashboard.

pub mod announce;
pub mod http;
pub mod identity;
pub mod quic;
pub mod resp;
