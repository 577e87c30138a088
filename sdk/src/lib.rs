//! # wasque-sdk
//!
//! Everything a program needs to talk to a wasque node:
//!
//! - [`proto`]: the wire vocabulary shared by nodes and clients (job ids,
//!   error classes, requests, replies, and the length-prefixed postcard
//!   framing used on QUIC streams).
//! - [`Client`]: an async client of one node over QUIC, trusting its CA.
//! - [`ClusterClient`]: a client of a cluster: seeds, discovery of every
//!   node, a pick rule per call (round-robin or least-loaded), failover.
//! - `cli` (feature `cli`, on by default): the `wasque` command line.
//!
//! ```no_run
//! # async fn demo() -> Result<(), wasque_sdk::ClientError> {
//! use wasque_sdk::{Client, ClientConfig, proto::AddJob};
//!
//! let client = Client::connect(ClientConfig::local("127.0.0.1:7711", "wasque-data")?).await?;
//! let module = client.put_module(std::fs::read("wordcount.wasm")?).await?;
//! let mut job = AddJob::new("words", b"hello wasm world".to_vec());
//! job.module = Some(module.hash);
//! let status = client.run(job, 10_000).await?; // add, wait for the result, ack
//! assert_eq!(status.result.unwrap().output, b"3\n");
//! # Ok(()) }
//! ```

pub mod proto;

/// The version of wasque (the workspace's, shared by the node and the CLI)
/// and the git commit it was built from ("unknown" without git), for
/// `--version` of both binaries.
pub const VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (",
    env!("WASQUE_GIT_COMMIT"),
    ")"
);

mod client;
mod cluster;
pub mod mapreduce;
mod tls;

#[cfg(feature = "cli")]
pub mod cli;

pub use client::{Client, ClientConfig, ClientError, Subscription};
pub use cluster::{ClusterClient, ClusterConfig, Pick};
pub use tls::{CLIENT_ALPN, PEER_ALPN, client_tls_config};
