//! The process heap's one setting: how far glibc's malloc grows its heap
//! at a time.
//!
//! A node that takes jobs grows its heap steadily (a job and its table
//! slot, a few hundred bytes each). glibc grows a heap by what is asked
//! plus `M_TOP_PAD`, 128 KiB by default, so at 300,000 adds a second the
//! I/O thread's arena called `mprotect` and faulted in fresh pages about
//! a thousand times a second, about a tenth of its time
//! (`benches/README.md`, RESP, session 21). With 64 MiB it grows in
//! large steps. The padding is address space until it is used, so the
//! RSS stays what the jobs take; after a large free the heap keeps up to
//! that much at its top instead of returning it at once.
//!
//! Setting it fixes glibc's mmap threshold at its 128 KiB default (the
//! threshold no longer rises with the sizes freed). A `MALLOC_TOP_PAD_`
//! or `GLIBC_TUNABLES` from the environment is left to rule.

/// What `M_TOP_PAD` is set to.
pub const TOP_PAD: usize = 64 << 20;

/// Applies the setting (before the node's threads start).
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        if std::env::var_os("MALLOC_TOP_PAD_").is_some()
            || std::env::var_os("GLIBC_TUNABLES").is_some()
        {
            return;
        }
        // SAFETY: mallopt sets a malloc parameter under glibc's own lock.
        let ok = unsafe { libc::mallopt(libc::M_TOP_PAD, TOP_PAD as libc::c_int) };
        if ok != 1 {
            tracing::debug!("mallopt(M_TOP_PAD) refused; the heap grows by glibc's default");
        }
    }
}
