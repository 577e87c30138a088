//! Shared helpers for wasque's integration tests and benchmarks:
//!
//! - [`guests`]: builds the example guest modules (`guest-examples/`, target
//!   `wasm32-wasip1`) once and hands out their paths.
//! - [`http`]: a minimal HTTP/1.0 client and event-stream reader.
//! - [`node`]: starts a `wasque-node` as a real process on free loopback
//!   ports and kills it by its own handle when dropped.
//! - [`resp`]: a RESP connection with timeouts, and one-command calls.
//! - [`tools`]: tests that need Chromium, Node.js or redis-cli: ignored
//!   by default, failing (never passing) where the program is missing.
//! - [`wait`]: bounded polling for a condition.

pub mod guests;
pub mod http;
pub mod node;
pub mod resp;
pub mod tools;
pub mod wait;
