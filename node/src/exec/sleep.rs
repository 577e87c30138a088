//! Guest time: the sandbox's `poll_oneoff`, which never sleeps past the
//! job's deadline.
//!
//! Epoch interruption only stops a guest while it runs Wasm code; a host
//! call such as `poll_oneoff` (what `std::thread::sleep` becomes on
//! wasm32-wasip1) would block the executor thread for as long as the guest
//! asks. The only descriptors a job has are stdin (an in-memory pipe, always
//! readable) and stdout/stderr (in-memory, always writable), so a
//! subscription to an open one is ready at once; a clock subscription
//! sleeps, at most until the job's deadline, and reaching the deadline ends
//! the job with the deadline recorded in the store (classified `Deadline`
//! from that record). The monotonic clock's origin is the job's start, as
//! `clock_time_get` (`wasi.rs`) reads it.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::{Caller, Extern};

use super::run::JobCtx;
use super::wasi::{errno, guest_slice, guest_slice_mut};

/// The error a job's `poll_oneoff` traps with when its sleep reaches the
/// deadline.
#[derive(Debug, thiserror::Error)]
#[error("the job's deadline passed while it slept")]
pub(crate) struct SleptPastDeadline;

/// Most subscriptions one `poll_oneoff` takes; more is `TOO_BIG`
/// (E2BIG). The sandbox has three descriptors and two clocks, so no
/// honest guest needs more; without a cap, a guest could make the host
/// parse (and allocate for) memory / 48 subscriptions in one call.
pub(crate) const MAX_POLL_SUBSCRIPTIONS: usize = 64;

const SUBSCRIPTION_SIZE: usize = 48;
const EVENT_SIZE: usize = 32;

const EVENTTYPE_CLOCK: u8 = 0;
const EVENTTYPE_FD_READ: u8 = 1;
const EVENTTYPE_FD_WRITE: u8 = 2;

const CLOCK_REALTIME: u32 = 0;
const CLOCK_MONOTONIC: u32 = 1;
const SUBCLOCK_ABSTIME: u16 = 1;

/// One parsed subscription.
struct Sub {
    userdata: u64,
    kind: SubKind,
}

enum SubKind {
    /// Fires after this long.
    Clock(Duration),
    /// A descriptor read/write readiness subscription.
    Fd { fd: u32, event: u8 },
}

/// `poll_oneoff(subscriptions, events, count, events_written)`.
pub(crate) fn poll_oneoff(
    caller: &mut Caller<'_, JobCtx>,
    subs: i32,
    events: i32,
    nsubs: i32,
    nevents_out: i32,
) -> wasmtime::Result<i32> {
    // Wasm passes pointers and sizes as i32; they are really u32.
    let (subs, events, nsubs, nevents_out) = (
        subs as u32 as usize,
        events as u32 as usize,
        nsubs as u32 as usize,
        nevents_out as u32 as usize,
    );
    if nsubs == 0 {
        return Ok(errno::INVAL);
    }
    if nsubs > MAX_POLL_SUBSCRIPTIONS {
        return Ok(errno::TOO_BIG);
    }
    let Some(Extern::Memory(memory)) = caller.get_export("memory") else {
        return Ok(errno::FAULT);
    };
    let origin = caller.data().origin;

    // Parse every subscription first.
    let mut parsed = Vec::with_capacity(nsubs);
    {
        let mem = memory.data(&*caller);
        let Some(raw) = guest_slice(mem, subs, nsubs.saturating_mul(SUBSCRIPTION_SIZE)) else {
            return Ok(errno::FAULT);
        };
        for s in raw.chunks_exact(SUBSCRIPTION_SIZE) {
            let userdata = u64_at(s, 0);
            let kind = match s[8] {
                0 => {
                    let clock = u32_at(s, 16);
                    let timeout = u64_at(s, 24);
                    let absolute = u16_at(s, 40) & SUBCLOCK_ABSTIME != 0;
                    let wait = match (clock, absolute) {
                        (CLOCK_REALTIME | CLOCK_MONOTONIC, false) => timeout,
                        (CLOCK_MONOTONIC, true) => timeout.saturating_sub(nanos(origin.elapsed())),
                        (CLOCK_REALTIME, true) => {
                            let now = SystemTime::now()
                                .duration_since(UNIX_EPOCH)
                                .map_or(0, nanos);
                            timeout.saturating_sub(now)
                        }
                        _ => return Ok(errno::INVAL),
                    };
                    SubKind::Clock(Duration::from_nanos(wait))
                }
                1 => SubKind::Fd {
                    fd: u32_at(s, 16),
                    event: EVENTTYPE_FD_READ,
                },
                2 => SubKind::Fd {
                    fd: u32_at(s, 16),
                    event: EVENTTYPE_FD_WRITE,
                },
                _ => return Ok(errno::INVAL),
            };
            parsed.push(Sub { userdata, kind });
        }
    }

    // Descriptors are in-memory and always ready: report them without
    // sleeping. Otherwise sleep until the first clock fires.
    let any_fd = parsed.iter().any(|s| matches!(s.kind, SubKind::Fd { .. }));
    let fired_by = if any_fd {
        Duration::ZERO
    } else {
        let first = parsed
            .iter()
            .filter_map(|s| match s.kind {
                SubKind::Clock(d) => Some(d),
                SubKind::Fd { .. } => None,
            })
            .min()
            .unwrap_or(Duration::ZERO);
        let deadline = caller.data().deadline;
        let now = Instant::now();
        let left = deadline.saturating_duration_since(now);
        let cancel = caller.data().cancel.clone();
        // What the job reported before it sleeps reaches watchers now.
        caller.data_mut().tap.flush();
        if first >= left {
            if !sleep_unless_cancelled(left, &cancel) {
                caller.data_mut().cancelled = true;
                return Err(wasmtime::Error::new(super::run::Cancelled));
            }
            caller.data_mut().deadline_hit = true;
            return Err(wasmtime::Error::new(SleptPastDeadline));
        }
        if !sleep_unless_cancelled(first, &cancel) {
            caller.data_mut().cancelled = true;
            return Err(wasmtime::Error::new(super::run::Cancelled));
        }
        first
    };

    let mut out = Vec::with_capacity(parsed.len() * EVENT_SIZE);
    let mut n = 0u32;
    for s in &parsed {
        let mut ev = [0u8; EVENT_SIZE];
        ev[0..8].copy_from_slice(&s.userdata.to_le_bytes());
        match s.kind {
            SubKind::Clock(d) if d <= fired_by => ev[10] = EVENTTYPE_CLOCK,
            SubKind::Clock(_) => continue,
            SubKind::Fd { fd, event } => {
                ev[10] = event;
                if !caller.data().io.is_open(fd) {
                    ev[8..10].copy_from_slice(&(errno::BADF as u16).to_le_bytes());
                }
            }
        }
        out.extend_from_slice(&ev);
        n += 1;
    }
    let mem = memory.data_mut(&mut *caller);
    let Some(dst) = guest_slice_mut(mem, events, out.len()) else {
        return Ok(errno::FAULT);
    };
    dst.copy_from_slice(&out);
    let Some(dst) = guest_slice_mut(mem, nevents_out, 4) else {
        return Ok(errno::FAULT);
    };
    dst.copy_from_slice(&n.to_le_bytes());
    Ok(errno::SUCCESS)
}

/// Sleeps `d` in slices of `CANCEL_CHECK`; `false` when the job's
/// cancel flag was set meanwhile (the sleep then ends early).
fn sleep_unless_cancelled(d: Duration, cancel: &std::sync::atomic::AtomicBool) -> bool {
    let end = Instant::now() + d;
    loop {
        if cancel.load(std::sync::atomic::Ordering::Acquire) {
            return false;
        }
        let left = end.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        std::thread::sleep(left.min(super::run::CANCEL_CHECK));
    }
}

/// `d` in nanoseconds, saturating.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

fn u16_at(s: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([s[at], s[at + 1]])
}

fn u32_at(s: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&s[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(s: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&s[at..at + 8]);
    u64::from_le_bytes(b)
}
