//! Tests of the sandbox's WASI preview 1 (`wasi.rs`) at the ABI: WAT
//! guests that make calls, keep each errno as a byte and write them out, so
//! one run checks many answers.

use wasque_sdk::proto::ErrorClass;

use super::tests::{limits, open, request};

/// Errnos of preview 1, as the guest sees them.
const SUCCESS: u8 = 0;
const BADF: u8 = 8;
const FAULT: u8 = 21;
const INVAL: u8 = 28;
const NOTDIR: u8 = 54;
const NOTSOCK: u8 = 57;
const NOTSUP: u8 = 58;
const SPIPE: u8 = 70;

/// Each `(call ...)` in `calls` keeps its errno at byte 3000 + i; then the
/// guest writes, gathered from four buffers in one `fd_write`: the errnos,
/// the 8 bytes at 100 (environment sizes), the 24 at 400 (stdout's fdstat)
/// and the 32 at 300 (random bytes). Memory is one page (64 KiB).
fn probe(calls: &[&str]) -> String {
    let kept: String = calls
        .iter()
        .enumerate()
        .map(|(i, c)| format!("    (i32.store8 (i32.const {}) {c})\n", 3000 + i))
        .collect();
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "fd_prestat_get" (func $fd_prestat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "path_open" (func $path_open (param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_accept" (func $sock_accept (param i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "sock_send" (func $sock_send (param i32 i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_seek" (func $fd_seek (param i32 i64 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "clock_time_get" (func $clock_time_get (param i32 i64 i32) (result i32)))
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "environ_sizes_get" (func $environ_sizes_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_fdstat_get" (func $fd_fdstat_get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_raise" (func $proc_raise (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_renumber" (func $fd_renumber (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; iovec at 0: a valid 16-byte buffer; at 16: one far outside memory.
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 16))
    (i32.store (i32.const 16) (i32.const 0xFFFF0000))
    (i32.store (i32.const 20) (i32.const 16))
    (memory.fill (i32.const 100) (i32.const 0xFF) (i32.const 8))
{kept}
    ;; Gathered output: four iovecs at 40.
    (i32.store (i32.const 40) (i32.const 3000))
    (i32.store (i32.const 44) (i32.const {n}))
    (i32.store (i32.const 48) (i32.const 100))
    (i32.store (i32.const 52) (i32.const 8))
    (i32.store (i32.const 56) (i32.const 400))
    (i32.store (i32.const 60) (i32.const 24))
    (i32.store (i32.const 64) (i32.const 300))
    (i32.store (i32.const 68) (i32.const 32))
    (if (call $fd_write (i32.const 1) (i32.const 40) (i32.const 4) (i32.const 80))
      (then unreachable))))"#,
        n = calls.len()
    )
}

#[test]
fn every_ungranted_call_gets_its_errno_and_bad_pointers_get_fault() {
    let f = open(1);
    let calls = [
        // No pre-opened directory: the scan ends at once.
        ("(call $fd_prestat_get (i32.const 3) (i32.const 100))", BADF),
        // A path needs a directory descriptor: none is open, stdio is none.
        (
            "(call $path_open (i32.const 3) (i32.const 0) (i32.const 200) (i32.const 4) (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 100))",
            BADF,
        ),
        (
            "(call $path_open (i32.const 1) (i32.const 0) (i32.const 200) (i32.const 4) (i32.const 0) (i64.const -1) (i64.const -1) (i32.const 0) (i32.const 100))",
            NOTDIR,
        ),
        // Sockets: stdio is not one, and nothing else is open.
        (
            "(call $sock_accept (i32.const 0) (i32.const 0) (i32.const 100))",
            NOTSOCK,
        ),
        (
            "(call $sock_send (i32.const 5) (i32.const 0) (i32.const 1) (i32.const 0) (i32.const 100))",
            BADF,
        ),
        // Streams do not seek; each goes one way.
        (
            "(call $fd_seek (i32.const 0) (i64.const 0) (i32.const 0) (i32.const 100))",
            SPIPE,
        ),
        (
            "(call $fd_read (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 100))",
            BADF,
        ),
        (
            "(call $fd_write (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 100))",
            BADF,
        ),
        // A buffer outside memory, an iovec array outside memory, too many
        // iovecs.
        (
            "(call $fd_read (i32.const 0) (i32.const 16) (i32.const 1) (i32.const 100))",
            FAULT,
        ),
        (
            "(call $fd_write (i32.const 1) (i32.const 0x7FFFFFF0) (i32.const 1) (i32.const 100))",
            FAULT,
        ),
        (
            "(call $fd_write (i32.const 1) (i32.const 0) (i32.const 2000) (i32.const 100))",
            INVAL,
        ),
        // Clocks: no CPU-time clock, no clock 9, no writing outside memory.
        (
            "(call $clock_time_get (i32.const 2) (i64.const 0) (i32.const 100))",
            BADF,
        ),
        (
            "(call $clock_time_get (i32.const 9) (i64.const 0) (i32.const 100))",
            INVAL,
        ),
        (
            "(call $clock_time_get (i32.const 1) (i64.const 0) (i32.const 0xFFFFFFF0))",
            FAULT,
        ),
        // Random bytes, in memory and not.
        ("(call $random_get (i32.const 300) (i32.const 32))", SUCCESS),
        (
            "(call $random_get (i32.const 0xFFFFFF00) (i32.const 512))",
            FAULT,
        ),
        (
            "(call $environ_sizes_get (i32.const 100) (i32.const 104))",
            SUCCESS,
        ),
        // A closed descriptor is gone.
        ("(call $fd_close (i32.const 0))", SUCCESS),
        ("(call $fd_close (i32.const 0))", BADF),
        (
            "(call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 100))",
            BADF,
        ),
        (
            "(call $fd_fdstat_get (i32.const 1) (i32.const 400))",
            SUCCESS,
        ),
        ("(call $proc_raise (i32.const 9))", NOTSUP),
        ("(call $fd_renumber (i32.const 2) (i32.const 7))", BADF),
    ];
    let wat = probe(&calls.iter().map(|(c, _)| *c).collect::<Vec<_>>());
    let r = f.run(&wat, b"a payload", limits());
    assert!(r.is_success(), "{r:?}");
    let n = calls.len();
    assert_eq!(r.output.len(), n + 8 + 24 + 32, "{:?}", r.output);
    for (i, (call, want)) in calls.iter().enumerate() {
        assert_eq!(r.output[i], *want, "errno of {call}");
    }
    let env = &r.output[n..n + 8];
    assert_eq!(env, &[0; 8], "no environment: 0 variables, 0 bytes");
    let fdstat = &r.output[n + 8..n + 32];
    assert_eq!(fdstat[0], 0, "filetype unknown");
    assert_eq!(fdstat[8..16], (1u64 << 6).to_le_bytes(), "stdout may write");
    let random = &r.output[n + 32..];
    assert!(random.iter().any(|&b| b != 0), "random bytes: {random:?}");
}

#[test]
fn arguments_are_argv0_then_the_jobs_own() {
    let f = open(1);
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $sizes (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "args_get" (func $get (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (if (call $sizes (i32.const 0) (i32.const 4)) (then unreachable))
    (if (call $get (i32.const 64) (i32.const 1024)) (then unreachable))
    ;; where argv[1] starts, relative to the buffer
    (i32.store (i32.const 8) (i32.sub (i32.load (i32.const 68)) (i32.const 1024)))
    (i32.store (i32.const 32) (i32.const 0))
    (i32.store (i32.const 36) (i32.const 12))
    (i32.store (i32.const 40) (i32.const 1024))
    (i32.store (i32.const 44) (i32.load (i32.const 4)))
    (if (call $fd_write (i32.const 1) (i32.const 32) (i32.const 2) (i32.const 48))
      (then unreachable))))"#;
    let hash = f.put(wat);
    let mut req = request(hash, b"", limits());
    req.args = vec!["a".into(), "bc".into()];
    let r = f.exec.run_here(&req);
    assert!(r.is_success(), "{r:?}");
    let argv0 = format!("{}.wasm", &hash.to_hex()[..16]);
    let mut want = Vec::new();
    want.extend_from_slice(&3u32.to_le_bytes());
    want.extend_from_slice(
        &u32::try_from(argv0.len() + 1 + 2 + 3)
            .unwrap()
            .to_le_bytes(),
    );
    want.extend_from_slice(&u32::try_from(argv0.len() + 1).unwrap().to_le_bytes());
    want.extend_from_slice(argv0.as_bytes());
    want.extend_from_slice(b"\0a\0bc\0");
    assert_eq!(r.output, want);
}

#[test]
fn reads_scatter_and_writes_gather() {
    let f = open(1);
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    ;; read into 3 bytes at 1024, then up to 100 at 2048
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 3))
    (i32.store (i32.const 8) (i32.const 2048))
    (i32.store (i32.const 12) (i32.const 100))
    (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 2) (i32.const 16)) (then unreachable))
    ;; at end of input a read gives 0 bytes
    (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 2) (i32.const 20)) (then unreachable))
    ;; write 3 bytes, the rest of the read, then both counts
    (i32.store (i32.const 32) (i32.const 1024))
    (i32.store (i32.const 36) (i32.const 3))
    (i32.store (i32.const 40) (i32.const 2048))
    (i32.store (i32.const 44) (i32.sub (i32.load (i32.const 16)) (i32.const 3)))
    (i32.store (i32.const 48) (i32.const 16))
    (i32.store (i32.const 52) (i32.const 8))
    (if (call $fd_write (i32.const 1) (i32.const 32) (i32.const 3) (i32.const 24)) (then unreachable))
    ;; the gathered write reports every byte: 3 + 8 + 8 = 19
    (if (i32.ne (i32.load (i32.const 24)) (i32.const 19)) (then unreachable))))"#;
    let r = f.run(wat, b"hello world", limits());
    assert!(r.is_success(), "{r:?}");
    let mut want = b"hello world".to_vec();
    want.extend_from_slice(&11u32.to_le_bytes());
    want.extend_from_slice(&0u32.to_le_bytes());
    assert_eq!(r.output, want);
}

#[test]
fn renumbering_moves_a_stream() {
    let f = open(1);
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_renumber" (func $renumber (param i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "x")
  (func (export "_start")
    (i32.store8 (i32.const 200) (call $renumber (i32.const 2) (i32.const 1)))
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 1))
    ;; descriptor 1 is stderr now, and 2 is closed
    (i32.store8 (i32.const 201) (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store8 (i32.const 202) (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
    (i32.store (i32.const 0) (i32.const 200))
    (i32.store (i32.const 4) (i32.const 3))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#;
    let r = f.run(wat, b"", limits());
    assert!(r.is_success(), "{r:?}");
    assert!(r.output.is_empty(), "{:?}", r.output);
    assert_eq!(r.stderr, [b'x', SUCCESS, SUCCESS, BADF]);
}

#[test]
fn an_exit_status_outside_wasi_range_is_a_trap() {
    let f = open(1);
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const 200))))"#;
    let r = f.run(wat, b"", limits());
    assert_eq!(r.error_class, Some(ErrorClass::Trap), "{r:?}");
    assert!(r.message.contains("outside of [0..126)"), "{}", r.message);
}

#[test]
fn a_module_without_memory_cannot_use_the_streams() {
    let f = open(1);
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (func (export "_start")
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 0) (i32.const 0)))))"#;
    let r = f.run(wat, b"", limits());
    assert_eq!(r.error_class, Some(ErrorClass::Trap), "{r:?}");
    assert!(r.message.contains("exports no memory"), "{}", r.message);
}

/// Every function of `wasi_snapshot_preview1` with its core signature, as
/// the witx lowers it (pointers, sizes, descriptors and 32-bit flags are
/// i32; file sizes, timestamps, rights and cookies i64).
const EVERY_FUNCTION: &[(&str, &str)] = &[
    ("args_get", "(param i32 i32) (result i32)"),
    ("args_sizes_get", "(param i32 i32) (result i32)"),
    ("environ_get", "(param i32 i32) (result i32)"),
    ("environ_sizes_get", "(param i32 i32) (result i32)"),
    ("clock_res_get", "(param i32 i32) (result i32)"),
    ("clock_time_get", "(param i32 i64 i32) (result i32)"),
    ("fd_advise", "(param i32 i64 i64 i32) (result i32)"),
    ("fd_allocate", "(param i32 i64 i64) (result i32)"),
    ("fd_close", "(param i32) (result i32)"),
    ("fd_datasync", "(param i32) (result i32)"),
    ("fd_fdstat_get", "(param i32 i32) (result i32)"),
    ("fd_fdstat_set_flags", "(param i32 i32) (result i32)"),
    ("fd_fdstat_set_rights", "(param i32 i64 i64) (result i32)"),
    ("fd_filestat_get", "(param i32 i32) (result i32)"),
    ("fd_filestat_set_size", "(param i32 i64) (result i32)"),
    (
        "fd_filestat_set_times",
        "(param i32 i64 i64 i32) (result i32)",
    ),
    ("fd_pread", "(param i32 i32 i32 i64 i32) (result i32)"),
    ("fd_prestat_get", "(param i32 i32) (result i32)"),
    ("fd_prestat_dir_name", "(param i32 i32 i32) (result i32)"),
    ("fd_pwrite", "(param i32 i32 i32 i64 i32) (result i32)"),
    ("fd_read", "(param i32 i32 i32 i32) (result i32)"),
    ("fd_readdir", "(param i32 i32 i32 i64 i32) (result i32)"),
    ("fd_renumber", "(param i32 i32) (result i32)"),
    ("fd_seek", "(param i32 i64 i32 i32) (result i32)"),
    ("fd_sync", "(param i32) (result i32)"),
    ("fd_tell", "(param i32 i32) (result i32)"),
    ("fd_write", "(param i32 i32 i32 i32) (result i32)"),
    ("path_create_directory", "(param i32 i32 i32) (result i32)"),
    (
        "path_filestat_get",
        "(param i32 i32 i32 i32 i32) (result i32)",
    ),
    (
        "path_filestat_set_times",
        "(param i32 i32 i32 i32 i64 i64 i32) (result i32)",
    ),
    (
        "path_link",
        "(param i32 i32 i32 i32 i32 i32 i32) (result i32)",
    ),
    (
        "path_open",
        "(param i32 i32 i32 i32 i32 i64 i64 i32 i32) (result i32)",
    ),
    (
        "path_readlink",
        "(param i32 i32 i32 i32 i32 i32) (result i32)",
    ),
    ("path_remove_directory", "(param i32 i32 i32) (result i32)"),
    (
        "path_rename",
        "(param i32 i32 i32 i32 i32 i32) (result i32)",
    ),
    ("path_symlink", "(param i32 i32 i32 i32 i32) (result i32)"),
    ("path_unlink_file", "(param i32 i32 i32) (result i32)"),
    ("poll_oneoff", "(param i32 i32 i32 i32) (result i32)"),
    ("proc_exit", "(param i32)"),
    ("proc_raise", "(param i32) (result i32)"),
    ("sched_yield", "(result i32)"),
    ("random_get", "(param i32 i32) (result i32)"),
    ("sock_accept", "(param i32 i32 i32) (result i32)"),
    ("sock_recv", "(param i32 i32 i32 i32 i32 i32) (result i32)"),
    ("sock_send", "(param i32 i32 i32 i32 i32) (result i32)"),
    ("sock_shutdown", "(param i32 i32) (result i32)"),
];

#[test]
fn a_module_importing_all_of_preview_1_links_and_runs() {
    assert_eq!(EVERY_FUNCTION.len(), 46, "preview 1 has 46 functions");
    let imports: String = EVERY_FUNCTION
        .iter()
        .map(|(name, sig)| {
            format!("  (import \"wasi_snapshot_preview1\" \"{name}\" (func ${name} {sig}))\n")
        })
        .collect();
    let wat = format!(
        "(module\n{imports}  (memory (export \"memory\") 1)\n  (func (export \"_start\")\n    (drop (call $sched_yield))))"
    );
    let f = open(1);
    let r = f.run(&wat, b"", limits());
    assert!(r.is_success(), "{r:?}");
}

/// A guest asking for random bytes in a loop: `len` bytes at 0, `times`
/// times, then it ends normally.
fn random_loop(len: u32, times: u32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $l
      (drop (call $random_get (i32.const 0) (i32.const {len})))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const {times}))))))"#
    )
}

#[test]
fn random_bytes_are_paid_for_in_fuel() {
    let f = open(1);
    let budget = wasque_sdk::proto::Limits {
        fuel: 1_000_000,
        ..limits()
    };
    // 64 KiB a call, 1,000 calls: 8,192,000 units of bytes, far past the
    // budget; the loop's own instructions alone are about 10,000.
    let r = f.run(&random_loop(65_536, 1_000), b"", budget);
    assert_eq!(r.error_class, Some(ErrorClass::OutOfFuel), "{r:?}");
    assert_eq!(r.fuel_used, 1_000_000);
    // A GiB a call (outside the one page: the call is refused with FAULT,
    // but asked for, so charged first): the first call cannot be paid.
    let r = f.run(&random_loop(1 << 30, 1_000_000), b"", budget);
    assert_eq!(r.error_class, Some(ErrorClass::OutOfFuel), "{r:?}");
    // A small request costs little: 32 bytes is 4 units.
    let r = f.run(&random_loop(32, 10), b"", budget);
    assert!(r.is_success(), "{r:?}");
    assert!(r.fuel_used < 200, "{r:?}");
}

#[test]
fn reads_and_writes_are_paid_for_by_the_byte() {
    let f = open(1);
    // Reads stdin 4 KiB at a time to the end, then writes the 1,000 bytes
    // at 8192 to stderr 100 times (stderr keeps its bound, drops the rest).
    let wat = r#"(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (i32.store (i32.const 0) (i32.const 4096))
    (i32.store (i32.const 4) (i32.const 4096))
    (loop $r
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (br_if $r (i32.load (i32.const 16))))
    (i32.store (i32.const 32) (i32.const 8192))
    (i32.store (i32.const 36) (i32.const 1000))
    (loop $w
      (drop (call $fd_write (i32.const 2) (i32.const 32) (i32.const 1) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $w (i32.lt_u (local.get $i) (i32.const 100))))))"#;
    let small = f.run(wat, b"", limits());
    assert!(small.is_success(), "{small:?}");
    let big = f.run(wat, &vec![7u8; 64 << 10], limits());
    assert!(big.is_success(), "{big:?}");
    // 100 writes of 1,000 bytes: 12,500 units at least.
    assert!(small.fuel_used >= 12_500, "{small:?}");
    // 64 KiB more read: 8,192 units more (the loop's 15 more turns cost
    // a few hundred instructions, not that).
    assert!(
        big.fuel_used - small.fuel_used >= 8_192,
        "{} vs {}",
        big.fuel_used,
        small.fuel_used
    );
}

#[test]
fn poll_oneoff_takes_at_most_64_subscriptions() {
    let f = open(1);
    // `n` subscriptions to stdin readiness (type 1, fd 0) at 1024, 48
    // bytes each; the errno as the output's one byte.
    let wat = |n: u32| {
        format!(
            r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $s
      (i32.store8 (i32.add (i32.const 1032) (i32.mul (local.get $i) (i32.const 48))) (i32.const 1))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $s (i32.lt_u (local.get $i) (i32.const {n}))))
    (i32.store8 (i32.const 100)
      (call $poll (i32.const 1024) (i32.const 8192) (i32.const {n}) (i32.const 96)))
    (i32.store (i32.const 0) (i32.const 100))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))"#
        )
    };
    let r = f.run(&wat(64), b"", limits());
    assert_eq!(r.output, [SUCCESS], "{r:?}");
    let r = f.run(&wat(65), b"", limits());
    assert_eq!(r.output, [1], "E2BIG past the cap: {r:?}");
    // Far past it (what once made the host parse memory / 48 of them).
    let r = f.run(&wat(1300), b"", limits());
    assert_eq!(r.output, [1], "{r:?}");
}
