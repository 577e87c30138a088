//! # wasque-node
//!
//! A wasque peer node: it accepts jobs from clients, queues them, runs Wasm
//! jobs in a wasmtime sandbox and hands results back for acknowledgement.
//!
//! ## Layout
//!
//! - [`job`]: the job model alone (ids, states, limits, results). The ground
//!   floor: everything else imports it, it imports none of them.
//! - [`api`]: the one command set and reply type every front door shares.
//! - [`auth`]: who may use the node: credentials every front door checks.
//! - [`engine`]: all job state of this node, as a sans-IO core:
//!   `handle_*(now, ..)` feeds it events, `poll_*` drains the effects it
//!   wants carried out (replies, executions) and its next timer.
//! - [`queue`]: per-queue ready order (priority, then age), delayed jobs.
//! - [`exec`]: wasmtime: module cache, limits, executor threads.
//! - [`cluster`]: peers over QUIC (peer ALPN, certificates both ways), SWIM
//!   membership, capacity adverts, module fetches; carries the engine's
//!   replication messages.
//! - [`net`]: TLS identities and the front doors (QUIC, HTTP).
//! - [`monitor`]: metrics registry, rates and event feed of one node.
//! - [`config`]: one [`config::Config`] from defaults, file and flags.
//! - [`quoting`]: Redis-style quoted words (config lines, inline commands).
//! - [`registry_file`]: the JSON file each replicated registry keeps
//!   (format check, private writes, changes undone when not saved).
//! - [`runtime`]: the driver, the one place that feeds the engine its events
//!   and carries out its effects.
//! - [`supervise`]: essential tasks; a panic in one ends the process.
//! - [`tenant`]: the tenant registry (tokens, quotas, owned modules).
//! - [`catalogue`]: the module name table (`NAME@VERSION` → hash),
//!   replicated like the tenant registry.
//! - [`sched`]: schedules (cron): their replicated registry and the task
//!   that adds each tick's job.
//! - [`cli`]: the `wasque-node` command line.

pub mod api;
pub mod auth;
pub mod catalogue;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod engine;
pub mod exec;
pub mod heap;
pub mod job;
pub mod monitor;
pub mod net;
pub mod queue;
pub mod quoting;
pub mod registry_file;
pub mod runtime;
pub mod sched;
pub mod store;
pub mod supervise;
pub mod tenant;
pub mod thread_class;
