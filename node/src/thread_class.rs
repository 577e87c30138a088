//! How the node's threads ask Linux to schedule them, none of it needing
//! privilege.
//!
//! - Executor threads are `SCHED_BATCH`: CPU-bound work, so a woken
//!   executor does not preempt the threads that replies wait for.
//! - I/O threads (the async runtime's workers: sockets, QUIC, the engine's
//!   driver; also its blocking pool, which compiles modules) and the
//!   store's writer ask for a short time slice, 0.1 ms. They run in short
//!   bursts that a client waits on; on kernels with EEVDF's custom slices
//!   (Linux 6.12 and later) a thread with a shorter slice gets an earlier
//!   deadline, so when it wakes it preempts an executor thread mid-slice
//!   instead of waiting its turn. A slice changes when a thread runs, not
//!   its share of the CPU. On older kernels the request is taken and has
//!   no effect. Measured in `benches/README.md` (Fair share, sessions
//!   21-22): light tenants' small jobs wait less under load, and nothing
//!   else moved.
//!
//! Each is best effort: a refusal is logged at debug and the thread keeps
//! the default.

/// The time slice asked for the I/O threads (the least Linux takes).
pub const IO_SLICE_NS: u64 = 100_000;

/// Marks the calling thread as CPU-bound batch work (`SCHED_BATCH`).
pub fn batch() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: pid 0 is the calling thread, `param` is a valid pointer for
        // the call's duration and priority 0 is the one SCHED_BATCH takes.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_BATCH, &param) } != 0 {
            tracing::debug!(
                "executor thread keeps the default scheduling: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

/// Asks a short time slice for the calling thread (an I/O thread).
pub fn latency() {
    #[cfg(target_os = "linux")]
    {
        let attr = libc::sched_attr {
            size: std::mem::size_of::<libc::sched_attr>() as u32,
            sched_policy: libc::SCHED_OTHER as u32,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: IO_SLICE_NS,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: pid 0 is the calling thread; `attr` is a valid
        // `sched_attr` of the size it states, for the call's duration.
        let r = unsafe {
            libc::syscall(
                libc::SYS_sched_setattr,
                0,
                &attr as *const libc::sched_attr,
                0,
            )
        };
        if r != 0 {
            tracing::debug!(
                "I/O thread keeps the default time slice: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    /// A new thread's scheduling attributes after it ran `class`, as the
    /// kernel reports them.
    fn attr_after(class: fn()) -> libc::sched_attr {
        std::thread::spawn(move || {
            class();
            // SAFETY: all-zero is a valid `sched_attr` (plain integers).
            let mut attr: libc::sched_attr = unsafe { std::mem::zeroed() };
            // SAFETY: pid 0 is the calling thread; `attr` is writable for
            // the size passed.
            let r = unsafe {
                libc::syscall(
                    libc::SYS_sched_getattr,
                    0,
                    &mut attr as *mut libc::sched_attr,
                    std::mem::size_of::<libc::sched_attr>() as u32,
                    0,
                )
            };
            assert_eq!(r, 0, "{}", std::io::Error::last_os_error());
            attr
        })
        .join()
        .unwrap()
    }

    /// Whether the running kernel has EEVDF's custom slices (6.12+).
    fn has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let mut parts = release.trim().split(['.', '-']);
        let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        (major, minor) >= (6, 12)
    }

    #[test]
    fn an_io_thread_gets_the_short_slice() {
        let attr = attr_after(latency);
        assert_eq!(attr.sched_policy, libc::SCHED_OTHER as u32);
        if has_custom_slices() {
            assert_eq!(attr.sched_runtime, IO_SLICE_NS);
        }
    }

    #[test]
    fn an_executor_thread_is_batch_with_the_default_slice() {
        let attr = attr_after(batch);
        assert_eq!(attr.sched_policy, libc::SCHED_BATCH as u32);
        assert_ne!(attr.sched_runtime, IO_SLICE_NS);
    }
}
