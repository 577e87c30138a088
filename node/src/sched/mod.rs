//! Schedules: a name, a cron expression and a job template; the cluster
//! adds one job from the template at each tick, leader-free (README,
//! Schedules; docs/ARCHITECTURE.md, Schedules).
//!
//! - `cron.rs` — cron expressions (UTC): parsing, next and latest ticks.
//! - `record.rs` — a schedule's record and how two copies merge.
//! - `registry.rs` — [`Schedules`]: the records in
//!   `DATA_DIR/schedules.json`, replicated like the tenant registry (a
//!   digest in each advert, the records when digests differ).
//! - `plan.rs` — which ticks this node fires now (pure, virtual-clock
//!   tests): a rendezvous ranking per tick, second chances after a
//!   grace, the missed-tick policy.
//! - `ticker.rs` — the task that plans and adds each tick's job through
//!   the engine with the idempotency key `schedule:KEY:TICK`.
//! - `command.rs` — add, list, show, remove for every door, scoped by
//!   tenant.
//!
//! The registry is not job state, so it lives beside the tenant registry
//! rather than in the engine; the jobs a schedule makes are ordinary adds,
//! and the engine's idempotency keys dedup a tick fired twice on any node
//! holding the first job.

pub mod command;
pub mod cron;
pub mod plan;
pub mod record;
pub mod registry;
pub mod ticker;

pub use command::{ScheduleAnswer, ScheduleCmd};
pub use plan::Timing;
pub use record::ScheduleRecord;
pub use registry::{FILE, SCHEDULE_FORMAT, ScheduleError, Schedules};
