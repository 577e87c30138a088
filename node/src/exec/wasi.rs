//! The sandbox's WASI preview 1: every function of `wasi_snapshot_preview1`,
//! served from the job's own state in its `Store`.
//!
//! What a job is granted, all of it:
//! - descriptor 0 reads the job's payload; 1 writes its result (bounded:
//!   past the bound the write traps and the job ends `output-limit`); 2
//!   writes its log (bounded, the rest dropped). They are streams: seeking
//!   is `SPIPE`, and `fd_close` / `fd_renumber` work on them;
//! - its arguments (`argv[0]` is the module's name), and an empty
//!   environment;
//! - the wall clock, and a monotonic clock that starts with the job;
//! - random bytes from the host's CSPRNG;
//! - `poll_oneoff`, which never sleeps past the deadline (`sleep.rs`).
//!
//! Nothing else exists: no pre-opened directory (so no path resolves;
//! wasi-libc refuses a path before asking the host), no file, no socket.
//! Every other function is still defined, so that any preview 1 module
//! links, and answers with an errno: `BADF` for a descriptor that is not
//! open, else what a stream answers (`NOTDIR` for a path call, `NOTSOCK` for
//! a socket call, `SPIPE` for a positioned one).
//!
//! Why not wasmtime-wasi: its preview 1 is an adapter over preview 2
//! resources, and every call enters a Tokio runtime, a resource table and a
//! tracing span; on a 1 KiB job that was a quarter of the executor threads'
//! time (benches/README.md, "session 9"). Guest memory is read and written
//! through wasmtime's checked slices only: a bad pointer gets `FAULT`, never
//! a host fault.

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use rand::RngCore;
use wasmtime::{Caller, Extern, FuncType, Linker, Memory, Val, ValType};

use super::pipe::{BoundedPipe, Overflow};
use super::run::JobCtx;
use super::sleep;

/// The only import module the sandbox grants.
pub(crate) const MODULE: &str = "wasi_snapshot_preview1";

/// Preview 1 errno values the sandbox answers with.
pub(crate) mod errno {
    pub(crate) const SUCCESS: i32 = 0;
    pub(crate) const TOO_BIG: i32 = 1;
    pub(crate) const BADF: i32 = 8;
    pub(crate) const FAULT: i32 = 21;
    pub(crate) const INVAL: i32 = 28;
    pub(crate) const NOTDIR: i32 = 54;
    pub(crate) const NOTSOCK: i32 = 57;
    pub(crate) const NOTSUP: i32 = 58;
    pub(crate) const SPIPE: i32 = 70;
}

/// Linux's `IOV_MAX`: more buffers in one `fd_read`/`fd_write` is `INVAL`,
/// so one host call's work stays bounded by more than guest memory alone.
const IOV_MAX: u32 = 1024;

/// Bytes a host call moves per unit of fuel it charges (`random_get`,
/// `fd_read`, `fd_write`, `args_get`). Fuel counts Wasm instructions; a
/// guest's own copy loop moves about 8 bytes per instruction, so a host
/// copy costs what the guest would have paid to do it itself. Without
/// this, one `random_get` of a GiB cost one unit: a loop of them ran far
/// past the job's fuel budget with the counter barely moving. A 1 KiB job
/// pays 128 units to read its payload: an echo of 1 KiB went from 57 to
/// 314 units, its run time unchanged within noise.
pub(crate) const BYTES_PER_FUEL: u64 = 8;

/// Charges the job for `bytes` moved by a host call: their fuel is taken
/// from the store's counter, and a job that cannot pay traps `OutOfFuel`
/// (classified as any other fuel exhaustion) with the counter at zero.
pub(crate) fn charge(c: &mut Ctx<'_>, bytes: u64) -> wasmtime::Result<()> {
    let cost = bytes.div_ceil(BYTES_PER_FUEL);
    if cost == 0 {
        return Ok(());
    }
    // A store without fuel metering (never a job's) has nothing to charge.
    let Ok(left) = c.get_fuel() else {
        return Ok(());
    };
    match left.checked_sub(cost) {
        Some(rest) => c.set_fuel(rest),
        None => {
            c.set_fuel(0)?;
            Err(wasmtime::Trap::OutOfFuel.into())
        }
    }
}

/// Rights bits of `fdstat` (preview 1's `rights` flags).
const RIGHT_FD_READ: u64 = 1 << 1;
const RIGHT_FD_WRITE: u64 = 1 << 6;

/// `filetype::unknown`, what wasmtime-wasi reports for in-memory stdio too.
const FILETYPE_UNKNOWN: u8 = 0;

/// The error a guest's `proc_exit` ends its run with.
#[derive(Debug, thiserror::Error)]
#[error("exited with status {0}")]
pub(crate) struct GuestExit(pub(crate) i32);

/// What an open descriptor is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stream {
    Stdin,
    Stdout,
    Stderr,
}

/// A job's standard streams, arguments and the guest memory they are
/// copied through.
pub(crate) struct GuestIo {
    stdin: Bytes,
    /// Bytes of `stdin` read so far.
    read: usize,
    pub(crate) stdout: BoundedPipe,
    pub(crate) stderr: BoundedPipe,
    /// What descriptors 0, 1 and 2 are now.
    fds: [Option<Stream>; 3],
    argv0: Arc<str>,
    args: Vec<String>,
    /// The instance's `memory` export, found on the first call that needs it.
    memory: Option<Memory>,
}

impl GuestIo {
    pub(crate) fn new(
        stdin: Bytes,
        max_stdout: usize,
        max_stderr: usize,
        argv0: Arc<str>,
        args: Vec<String>,
    ) -> GuestIo {
        GuestIo {
            stdin,
            read: 0,
            stdout: BoundedPipe::new(max_stdout, Overflow::Fail),
            stderr: BoundedPipe::new(max_stderr, Overflow::Discard),
            fds: [
                Some(Stream::Stdin),
                Some(Stream::Stdout),
                Some(Stream::Stderr),
            ],
            argv0,
            args,
            memory: None,
        }
    }

    fn stream(&self, fd: i32) -> Option<Stream> {
        usize::try_from(fd)
            .ok()
            .and_then(|i| self.fds.get(i).copied().flatten())
    }

    /// Whether `fd` is an open descriptor.
    pub(crate) fn is_open(&self, fd: u32) -> bool {
        i32::try_from(fd).is_ok_and(|fd| self.stream(fd).is_some())
    }

    /// `argv[0]` and the job's arguments.
    fn argv(&self) -> impl Iterator<Item = &str> {
        std::iter::once(&*self.argv0).chain(self.args.iter().map(String::as_str))
    }
}

pub(crate) type Ctx<'a> = Caller<'a, JobCtx>;

/// Defines every preview 1 function in `linker`.
pub(crate) fn add_to_linker(linker: &mut Linker<JobCtx>) -> wasmtime::Result<()> {
    let l = linker;
    // Arguments and environment.
    l.func_wrap(MODULE, "args_get", |mut c: Ctx<'_>, argv: i32, buf: i32| {
        args_get(&mut c, argv, buf)
    })?;
    l.func_wrap(
        MODULE,
        "args_sizes_get",
        |mut c: Ctx<'_>, count: i32, size: i32| args_sizes_get(&mut c, count, size),
    )?;
    l.func_wrap(MODULE, "environ_get", |_: Ctx<'_>, _: i32, _: i32| {
        errno::SUCCESS
    })?;
    l.func_wrap(
        MODULE,
        "environ_sizes_get",
        |mut c: Ctx<'_>, count: i32, size: i32| {
            with_memory(&mut c, |mem, _| {
                put_u32(mem, count, 0).and_then(|()| put_u32(mem, size, 0))
            })
        },
    )?;

    // Clocks, random, scheduling, exit.
    l.func_wrap(
        MODULE,
        "clock_res_get",
        |mut c: Ctx<'_>, id: i32, out: i32| match clock_now(&c, id) {
            Ok(_) => with_memory(&mut c, |mem, _| put_u64(mem, out, 1)),
            Err(e) => Ok(e),
        },
    )?;
    l.func_wrap(
        MODULE,
        "clock_time_get",
        |mut c: Ctx<'_>, id: i32, _precision: i64, out: i32| match clock_now(&c, id) {
            Ok(now) => with_memory(&mut c, |mem, _| put_u64(mem, out, now)),
            Err(e) => Ok(e),
        },
    )?;
    l.func_wrap(
        MODULE,
        "random_get",
        |mut c: Ctx<'_>, buf: i32, len: i32| {
            // Paid before the bytes are made: a request the job cannot
            // pay for does no work.
            charge(&mut c, u64::from(len as u32))?;
            with_memory(&mut c, |mem, _| {
                let dst = slice_mut(mem, buf, len).ok_or(errno::FAULT)?;
                rand::rng().fill_bytes(dst);
                Ok(())
            })
        },
    )?;
    l.func_wrap(MODULE, "sched_yield", |_: Ctx<'_>| errno::SUCCESS)?;
    l.func_wrap(
        MODULE,
        "poll_oneoff",
        |mut c: Ctx<'_>, subs: i32, events: i32, n: i32, n_out: i32| {
            sleep::poll_oneoff(&mut c, subs, events, n, n_out)
        },
    )?;
    l.func_wrap(
        MODULE,
        "proc_exit",
        |_: Ctx<'_>, code: i32| -> wasmtime::Result<()> {
            // Preview 1 exit statuses are below 126, as in wasmtime-wasi.
            match u32::try_from(code) {
                Ok(c) if c < 126 => Err(wasmtime::Error::new(GuestExit(code))),
                _ => wasmtime::bail!(
                    "exit with invalid exit status {} outside of [0..126)",
                    code as u32
                ),
            }
        },
    )?;
    l.func_wrap(MODULE, "proc_raise", |_: Ctx<'_>, _sig: i32| errno::NOTSUP)?;

    // The three streams.
    l.func_wrap(
        MODULE,
        "fd_read",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, out: i32| fd_read(&mut c, fd, iovs, n, out),
    )?;
    l.func_wrap(
        MODULE,
        "fd_write",
        |mut c: Ctx<'_>, fd: i32, iovs: i32, n: i32, out: i32| fd_write(&mut c, fd, iovs, n, out),
    )?;
    l.func_wrap(MODULE, "fd_close", |mut c: Ctx<'_>, fd: i32| {
        let io = &mut c.data_mut().io;
        match usize::try_from(fd).ok().and_then(|i| io.fds.get_mut(i)) {
            Some(slot @ Some(_)) => {
                *slot = None;
                errno::SUCCESS
            }
            _ => errno::BADF,
        }
    })?;
    l.func_wrap(
        MODULE,
        "fd_renumber",
        |mut c: Ctx<'_>, from: i32, to: i32| {
            let io = &mut c.data_mut().io;
            match (io.stream(from), io.stream(to)) {
                (Some(s), Some(_)) => {
                    // Both were checked open, so both index `fds`.
                    io.fds[from as usize] = None;
                    io.fds[to as usize] = Some(s);
                    errno::SUCCESS
                }
                _ => errno::BADF,
            }
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_fdstat_get",
        |mut c: Ctx<'_>, fd: i32, out: i32| {
            let Some(s) = c.data().io.stream(fd) else {
                return Ok(errno::BADF);
            };
            let rights = if s == Stream::Stdin {
                RIGHT_FD_READ
            } else {
                RIGHT_FD_WRITE
            };
            // fdstat: filetype u8 @0, flags u16 @2, rights u64 @8, inheriting @16.
            let mut stat = [0u8; 24];
            stat[0] = FILETYPE_UNKNOWN;
            stat[8..16].copy_from_slice(&rights.to_le_bytes());
            stat[16..24].copy_from_slice(&rights.to_le_bytes());
            with_memory(&mut c, |mem, _| put(mem, out, &stat))
        },
    )?;
    l.func_wrap(
        MODULE,
        "fd_filestat_get",
        |mut c: Ctx<'_>, fd: i32, out: i32| {
            if c.data().io.stream(fd).is_none() {
                return Ok(errno::BADF);
            }
            // filestat (64 bytes): all zero but the filetype @16.
            let mut stat = [0u8; 64];
            stat[16] = FILETYPE_UNKNOWN;
            with_memory(&mut c, |mem, _| put(mem, out, &stat))
        },
    )?;
    // Everything else: calls on files, directories and sockets.
    for &(name, params, fd_at, on_stream) in REFUSED {
        let ty = FuncType::new(l.engine(), params.iter().cloned(), [ValType::I32]);
        l.func_new(MODULE, name, ty, move |c, args, results| {
            let fd = args.get(fd_at).and_then(Val::i32).unwrap_or(-1);
            if let Some(r) = results.first_mut() {
                *r = Val::I32(on_fd(&c, fd, on_stream));
            }
            Ok(())
        })?;
    }
    Ok(())
}

/// The calls no descriptor of a job supports: name, parameter types (as
/// the witx lowers them), which parameter is the descriptor, and what an
/// open stream answers (a descriptor that is not open gets `BADF`). No
/// descriptor is a file, a directory or a socket, and none is pre-opened.
const REFUSED: &[(&str, &[ValType], usize, i32)] = {
    use ValType::{I32, I64};
    &[
        ("fd_seek", &[I32, I64, I32, I32], 0, errno::SPIPE),
        ("fd_tell", &[I32, I32], 0, errno::SPIPE),
        ("fd_pread", &[I32, I32, I32, I64, I32], 0, errno::SPIPE),
        ("fd_pwrite", &[I32, I32, I32, I64, I32], 0, errno::SPIPE),
        ("fd_advise", &[I32, I64, I64, I32], 0, errno::SPIPE),
        ("fd_allocate", &[I32, I64, I64], 0, errno::SPIPE),
        ("fd_datasync", &[I32], 0, errno::INVAL),
        ("fd_sync", &[I32], 0, errno::INVAL),
        ("fd_fdstat_set_flags", &[I32, I32], 0, errno::NOTSUP),
        ("fd_fdstat_set_rights", &[I32, I64, I64], 0, errno::NOTSUP),
        ("fd_filestat_set_size", &[I32, I64], 0, errno::INVAL),
        (
            "fd_filestat_set_times",
            &[I32, I64, I64, I32],
            0,
            errno::NOTSUP,
        ),
        ("fd_readdir", &[I32, I32, I32, I64, I32], 0, errno::NOTDIR),
        // No pre-opened directory: the scan wasi-libc makes at start ends
        // at once.
        ("fd_prestat_get", &[I32, I32], 0, errno::BADF),
        ("fd_prestat_dir_name", &[I32, I32, I32], 0, errno::BADF),
        ("path_create_directory", &[I32, I32, I32], 0, errno::NOTDIR),
        (
            "path_filestat_get",
            &[I32, I32, I32, I32, I32],
            0,
            errno::NOTDIR,
        ),
        (
            "path_filestat_set_times",
            &[I32, I32, I32, I32, I64, I64, I32],
            0,
            errno::NOTDIR,
        ),
        (
            "path_link",
            &[I32, I32, I32, I32, I32, I32, I32],
            0,
            errno::NOTDIR,
        ),
        (
            "path_open",
            &[I32, I32, I32, I32, I32, I64, I64, I32, I32],
            0,
            errno::NOTDIR,
        ),
        (
            "path_readlink",
            &[I32, I32, I32, I32, I32, I32],
            0,
            errno::NOTDIR,
        ),
        ("path_remove_directory", &[I32, I32, I32], 0, errno::NOTDIR),
        (
            "path_rename",
            &[I32, I32, I32, I32, I32, I32],
            0,
            errno::NOTDIR,
        ),
        // (old path, old path length, directory, new path, its length)
        ("path_symlink", &[I32, I32, I32, I32, I32], 2, errno::NOTDIR),
        ("path_unlink_file", &[I32, I32, I32], 0, errno::NOTDIR),
        ("sock_accept", &[I32, I32, I32], 0, errno::NOTSOCK),
        (
            "sock_recv",
            &[I32, I32, I32, I32, I32, I32],
            0,
            errno::NOTSOCK,
        ),
        ("sock_send", &[I32, I32, I32, I32, I32], 0, errno::NOTSOCK),
        ("sock_shutdown", &[I32, I32], 0, errno::NOTSOCK),
    ]
};

/// `BADF` for a descriptor that is not open, else `on_stream`: the answer of
/// a call that no stream supports.
fn on_fd(c: &Ctx<'_>, fd: i32, on_stream: i32) -> i32 {
    match c.data().io.stream(fd) {
        Some(_) => on_stream,
        None => errno::BADF,
    }
}

/// The guest's memory and the job's state, both borrowed, for `f`; its
/// `Err(errno)` is returned to the guest as is. A module that exports no
/// memory cannot take part in preview 1 at all: that traps.
fn with_memory(
    c: &mut Ctx<'_>,
    f: impl FnOnce(&mut [u8], &mut JobCtx) -> Result<(), i32>,
) -> wasmtime::Result<i32> {
    let memory = match c.data().io.memory {
        Some(m) => m,
        None => {
            let Some(Extern::Memory(m)) = c.get_export("memory") else {
                wasmtime::bail!("the module calls WASI but exports no memory named `memory`");
            };
            c.data_mut().io.memory = Some(m);
            m
        }
    };
    let (mem, ctx) = memory.data_and_store_mut(c);
    Ok(f(mem, ctx).err().unwrap_or(errno::SUCCESS))
}

fn args_sizes_get(c: &mut Ctx<'_>, count: i32, size: i32) -> wasmtime::Result<i32> {
    with_memory(c, |mem, ctx| {
        let n = ctx.io.argv().count();
        let bytes: usize = ctx.io.argv().map(|a| a.len() + 1).sum();
        let n = u32::try_from(n).map_err(|_| errno::TOO_BIG)?;
        let bytes = u32::try_from(bytes).map_err(|_| errno::TOO_BIG)?;
        put_u32(mem, count, n)?;
        put_u32(mem, size, bytes)
    })
}

fn args_get(c: &mut Ctx<'_>, argv: i32, buf: i32) -> wasmtime::Result<i32> {
    let bytes: usize = c.data().io.argv().map(|a| a.len() + 5).sum();
    charge(c, bytes as u64)?;
    with_memory(c, |mem, ctx| {
        let mut at = buf as u32;
        for (i, arg) in ctx.io.argv().enumerate() {
            let slot = u32::try_from(i)
                .ok()
                .and_then(|i| i.checked_mul(4))
                .and_then(|o| (argv as u32).checked_add(o))
                .ok_or(errno::FAULT)?;
            put_u32(mem, slot as i32, at)?;
            let len = u32::try_from(arg.len() + 1).map_err(|_| errno::TOO_BIG)?;
            let dst = slice_mut(mem, at as i32, len as i32).ok_or(errno::FAULT)?;
            let (text, nul) = dst.split_at_mut(arg.len());
            text.copy_from_slice(arg.as_bytes());
            nul[0] = 0;
            at = at.checked_add(len).ok_or(errno::FAULT)?;
        }
        Ok(())
    })
}

/// Now on clock `id` in nanoseconds, or the errno for a clock the job has
/// not got (`BADF` for the CPU-time clocks, as wasmtime-wasi answers).
fn clock_now(c: &Ctx<'_>, id: i32) -> Result<u64, i32> {
    match id {
        0 => Ok(SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, sleep::nanos)),
        1 => Ok(sleep::nanos(c.data().origin.elapsed())),
        2 | 3 => Err(errno::BADF),
        _ => Err(errno::INVAL),
    }
}

/// The `i`th `(pointer, length)` of the iovec array at `iovs`.
fn iovec(mem: &[u8], iovs: i32, i: u32) -> Result<(i32, i32), i32> {
    let at = i
        .checked_mul(8)
        .and_then(|o| (iovs as u32).checked_add(o))
        .ok_or(errno::FAULT)?;
    let raw = slice(mem, at as i32, 8).ok_or(errno::FAULT)?;
    Ok((le_i32(&raw[0..4]), le_i32(&raw[4..8])))
}

fn fd_read(c: &mut Ctx<'_>, fd: i32, iovs: i32, n: i32, out: i32) -> wasmtime::Result<i32> {
    match c.data().io.stream(fd) {
        Some(Stream::Stdin) => {}
        _ => return Ok(errno::BADF),
    }
    if n as u32 > IOV_MAX {
        return Ok(errno::INVAL);
    }
    let mut moved = 0u64;
    let answer = with_memory(c, |mem, ctx| {
        let io = &mut ctx.io;
        let mut total = 0u32;
        for i in 0..n as u32 {
            let left = &io.stdin[io.read..];
            if left.is_empty() {
                break;
            }
            let (ptr, len) = iovec(mem, iovs, i)?;
            let dst = slice_mut(mem, ptr, len).ok_or(errno::FAULT)?;
            let k = dst.len().min(left.len());
            dst[..k].copy_from_slice(&left[..k]);
            io.read += k;
            moved += k as u64;
            // `k` is at most this iovec's u32 length; the sum is checked.
            total = total.checked_add(k as u32).ok_or(errno::INVAL)?;
        }
        put_u32(mem, out, total)
    })?;
    // Paid after: the payload bounds the copy, and what was read is known.
    charge(c, moved)?;
    Ok(answer)
}

fn fd_write(c: &mut Ctx<'_>, fd: i32, iovs: i32, n: i32, out: i32) -> wasmtime::Result<i32> {
    let stream = match c.data().io.stream(fd) {
        Some(s @ (Stream::Stdout | Stream::Stderr)) => s,
        _ => return Ok(errno::BADF),
    };
    if n as u32 > IOV_MAX {
        return Ok(errno::INVAL);
    }
    let mut overflow = None;
    let mut moved = 0u64;
    let answer = with_memory(c, |mem, ctx| {
        // Stdout's lines are also offered to watchers (`live.rs`).
        let (pipe, mut tap) = match stream {
            Stream::Stdout => (&mut ctx.io.stdout, Some(&mut ctx.tap)),
            _ => (&mut ctx.io.stderr, None),
        };
        let mut total = 0u32;
        for i in 0..n as u32 {
            let (ptr, len) = iovec(mem, iovs, i)?;
            let src = slice(mem, ptr, len).ok_or(errno::FAULT)?;
            moved += src.len() as u64;
            if let Err(e) = pipe.append(src) {
                overflow = Some(e);
                return Ok(());
            }
            if let Some(t) = tap.as_mut() {
                t.stdout(src);
            }
            total = total.checked_add(len as u32).ok_or(errno::INVAL)?;
        }
        put_u32(mem, out, total)
    })?;
    match overflow {
        // The pipe recorded it; the run ends here.
        Some(e) => Err(wasmtime::Error::new(e)),
        None => {
            // Paid after: the output bounds bound the copy (stderr's
            // excess is dropped, but was offered, so it is paid for).
            charge(c, moved)?;
            Ok(answer)
        }
    }
}

/// `len` bytes of guest memory at `at`, or `None` where they leave it.
pub(crate) fn guest_slice(mem: &[u8], at: usize, len: usize) -> Option<&[u8]> {
    mem.get(at..at.checked_add(len)?)
}

/// The same, to write.
pub(crate) fn guest_slice_mut(mem: &mut [u8], at: usize, len: usize) -> Option<&mut [u8]> {
    mem.get_mut(at..at.checked_add(len)?)
}

// Wasm passes pointers and lengths as i32; they are u32.

fn slice(mem: &[u8], at: i32, len: i32) -> Option<&[u8]> {
    guest_slice(mem, at as u32 as usize, len as u32 as usize)
}

fn slice_mut(mem: &mut [u8], at: i32, len: i32) -> Option<&mut [u8]> {
    guest_slice_mut(mem, at as u32 as usize, len as u32 as usize)
}

fn put(mem: &mut [u8], at: i32, bytes: &[u8]) -> Result<(), i32> {
    let len = i32::try_from(bytes.len()).map_err(|_| errno::FAULT)?;
    slice_mut(mem, at, len)
        .ok_or(errno::FAULT)?
        .copy_from_slice(bytes);
    Ok(())
}

fn put_u32(mem: &mut [u8], at: i32, v: u32) -> Result<(), i32> {
    put(mem, at, &v.to_le_bytes())
}

fn put_u64(mem: &mut [u8], at: i32, v: u64) -> Result<(), i32> {
    put(mem, at, &v.to_le_bytes())
}

fn le_i32(b: &[u8]) -> i32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(b);
    i32::from_le_bytes(a)
}
