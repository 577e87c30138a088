//! Tests of the executor through its public API, with small WAT guests
//! compiled to binary here (the executor itself never accepts WAT).

use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use wasque_sdk::proto::{ErrorClass, JobId, JobResult, Limits, ModuleHash};

use super::{ExecConfig, ExecDone, ExecError, ExecRequest, Executor};

/// Copies stdin to stdout, 4 KiB at a time, after logging "echo\n" to
/// stderr.
const ECHO: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 64) "echo\n")
  (func (export "_start")
    (local $n i32)
    (i32.store (i32.const 0) (i32.const 64))
    (i32.store (i32.const 4) (i32.const 5))
    (drop (call $fd_write (i32.const 2) (i32.const 0) (i32.const 1) (i32.const 16)))
    (loop $l
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 4096))
      (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $n (i32.load (i32.const 16)))
      (if (i32.gt_u (local.get $n) (i32.const 0))
        (then
          (i32.store (i32.const 4) (local.get $n))
          (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
          (br $l))))))
"#;

/// Spins forever.
const SPIN: &str = r#"(module (func (export "_start") (loop $l (br $l))))"#;

/// Grows memory until refused, then traps, as a Rust guest's allocator does.
const HOG: &str = r#"
(module
  (memory 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))
    unreachable))
"#;

/// Grows memory until refused, then returns normally (it coped).
const HOG_COPES: &str = r#"
(module
  (memory 1)
  (func (export "_start")
    (loop $l (br_if $l (i32.ne (memory.grow (i32.const 16)) (i32.const -1))))))
"#;

const UNREACHABLE: &str = r#"(module (func (export "_start") unreachable))"#;

const RECURSE: &str = r#"
(module
  (func $f (param i64) (result i64) (i64.add (call $f (local.get 0)) (i64.const 1)))
  (func (export "_start") (drop (call $f (i64.const 0)))))
"#;

/// `proc_exit` with the status given as a constant in the text.
fn exit_with(code: i32) -> String {
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "_start") (call $exit (i32.const {code}))))"#
    )
}

/// Writes 100 bytes to stdout 100 times.
const FLOOD: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $i i32)
    (loop $l
      (i32.store (i32.const 0) (i32.const 1024))
      (i32.store (i32.const 4) (i32.const 100))
      (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 100))))))
"#;

/// Sleeps through `poll_oneoff` on one relative monotonic clock for the
/// number of milliseconds given in the text, then writes "woke".
fn sleeper(ms: u64) -> String {
    let ns = ms * 1_000_000;
    format!(
        r#"(module
  (import "wasi_snapshot_preview1" "poll_oneoff" (func $poll (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 512) "woke")
  (func (export "_start")
    ;; subscription at 0: userdata 7, tag clock, monotonic, timeout, no flags
    (i64.store (i32.const 0) (i64.const 7))
    (i32.store8 (i32.const 8) (i32.const 0))
    (i32.store (i32.const 16) (i32.const 1))
    (i64.store (i32.const 24) (i64.const {ns}))
    (if (call $poll (i32.const 0) (i32.const 64) (i32.const 1) (i32.const 128))
      (then unreachable))
    (if (i32.ne (i32.load (i32.const 128)) (i32.const 1)) (then unreachable))
    (if (i64.ne (i64.load (i32.const 64)) (i64.const 7)) (then unreachable))
    (i32.store (i32.const 256) (i32.const 512))
    (i32.store (i32.const 260) (i32.const 4))
    (drop (call $fd_write (i32.const 1) (i32.const 256) (i32.const 1) (i32.const 272)))))"#
    )
}

/// Reads one byte of stdin. "w": grows memory by a page and fills all of
/// it with 0xAB. "r": grows memory by a page and writes the sum of every
/// byte of memory (after clearing its own scratch bytes) as an i64 LE.
const SNOOP: &str = r#"
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_start")
    (local $cmd i32) (local $i i32) (local $end i32) (local $sum i64)
    (i32.store (i32.const 0) (i32.const 32))
    (i32.store (i32.const 4) (i32.const 1))
    (drop (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 16)))
    (local.set $cmd (i32.load8_u (i32.const 32)))
    (drop (memory.grow (i32.const 1)))
    (local.set $end (i32.mul (memory.size) (i32.const 65536)))
    (if (i32.eq (local.get $cmd) (i32.const 119)) ;; 'w'
      (then (memory.fill (i32.const 0) (i32.const 0xAB) (local.get $end)) (return)))
    (memory.fill (i32.const 0) (i32.const 0) (i32.const 64))
    (loop $l
      (local.set $sum (i64.add (local.get $sum) (i64.load8_u (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (local.get $end))))
    (i64.store (i32.const 40) (local.get $sum))
    (i32.store (i32.const 0) (i32.const 40))
    (i32.store (i32.const 4) (i32.const 8))
    (drop (call $fd_write (i32.const 1) (i32.const 0) (i32.const 1) (i32.const 16)))))
"#;

pub(super) fn wasm(wat: &str) -> Vec<u8> {
    wat::parse_str(wat).expect("test WAT is valid")
}

fn config(threads: usize) -> ExecConfig {
    ExecConfig {
        threads,
        max_memory_bytes: 64 << 20,
        max_output_bytes: 1024,
        max_stderr_bytes: 1024,
        max_module_bytes: 1 << 20,
        epoch_tick: Duration::from_millis(5),
        memory_cow: true,
        node_id: "test-node".into(),
    }
}

pub(super) struct Fixture {
    dir: tempfile::TempDir,
    pub(super) exec: Executor,
    done: UnboundedReceiver<ExecDone>,
}

pub(super) fn open(threads: usize) -> Fixture {
    open_with(config(threads))
}

fn open_with(cfg: ExecConfig) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, done) = unbounded_channel();
    let exec = Executor::open(cfg, dir.path(), tx).expect("executor opens");
    Fixture { dir, exec, done }
}

pub(super) fn limits() -> Limits {
    Limits {
        fuel: 1_000_000_000,
        memory_bytes: 16 << 20,
        deadline_ms: 10_000,
    }
}

pub(super) fn request(module: ModuleHash, body: &[u8], limits: Limits) -> ExecRequest {
    static SEQ: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    ExecRequest {
        job: JobId::compose(1_732_000_000_000, seq, 1, false, 3600, 0),
        attempt: 1,
        module,
        body: Bytes::copy_from_slice(body),
        args: Vec::new(),
        limits,
        share: Default::default(),
    }
}

impl Fixture {
    pub(super) fn put(&self, wat: &str) -> ModuleHash {
        self.exec
            .put_module(&wasm(wat))
            .expect("module accepted")
            .hash
    }

    pub(super) fn run(&self, wat: &str, body: &[u8], limits: Limits) -> JobResult {
        let hash = self.put(wat);
        self.exec.run_here(&request(hash, body, limits))
    }
}

#[test]
fn echo_round_trip() {
    let f = open(1);
    let r = f.run(ECHO, b"hello, wasque", limits());
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.exit_code, Some(0));
    assert_eq!(r.output, b"hello, wasque");
    assert_eq!(r.stderr, b"echo\n");
    assert_eq!(r.node, "test-node");
    assert!(r.fuel_used > 0 && r.fuel_used < limits().fuel);
    assert!(r.message.is_empty());
}

#[test]
fn echo_through_the_threads() {
    let mut f = open(2);
    let hash = f.put(ECHO);
    for i in 0..20u8 {
        f.exec.submit(request(hash, &[b'a' + i], limits()));
    }
    let mut seen = Vec::new();
    for _ in 0..20 {
        let d = f.done.blocking_recv().expect("a result");
        assert!(d.result.is_success(), "{:?}", d.result);
        seen.push(d.result.output[0]);
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..20u8).map(|i| b'a' + i).collect::<Vec<_>>());
    assert_eq!(f.exec.stats().jobs_run, 20);
}

#[test]
fn out_of_fuel() {
    let f = open(1);
    let l = Limits {
        fuel: 10_000_000,
        deadline_ms: 60_000,
        ..limits()
    };
    let r = f.run(SPIN, b"", l);
    assert_eq!(r.error_class, Some(ErrorClass::OutOfFuel), "{r:?}");
    assert_eq!(r.exit_code, None);
    assert_eq!(r.fuel_used, 10_000_000);
    assert_eq!(r.message, "ran out of fuel after 10000000 units");
}

#[test]
fn deadline() {
    let f = open(1);
    let l = Limits {
        fuel: u64::MAX,
        deadline_ms: 50,
        ..limits()
    };
    let t = Instant::now();
    let r = f.run(SPIN, b"", l);
    let took = t.elapsed();
    assert_eq!(r.error_class, Some(ErrorClass::Deadline), "{r:?}");
    assert_eq!(r.message, "deadline of 50 ms passed");
    assert!(took >= Duration::from_millis(50), "{took:?}");
    assert!(took < Duration::from_secs(2), "{took:?}");
}

#[test]
fn a_sleep_never_outlasts_the_deadline() {
    let f = open(1);
    let l = Limits {
        deadline_ms: 100,
        ..limits()
    };
    let t = Instant::now();
    let r = f.run(&sleeper(60_000), b"", l);
    assert_eq!(r.error_class, Some(ErrorClass::Deadline), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());

    let t = Instant::now();
    let r = f.run(&sleeper(20), b"", limits());
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.output, b"woke");
    assert!(t.elapsed() >= Duration::from_millis(20));
}

#[test]
fn memory_limit_from_the_limiters_record() {
    let f = open(1);
    let l = Limits {
        memory_bytes: 4 << 20,
        ..limits()
    };
    let r = f.run(HOG, b"", l);
    assert_eq!(r.error_class, Some(ErrorClass::MemoryLimit), "{r:?}");
    assert_eq!(r.message, "memory limit of 4194304 bytes reached");

    // A guest that copes with the refusal succeeds.
    let r = f.run(HOG_COPES, b"", l);
    assert!(r.is_success(), "{r:?}");

    // A job cannot get past the node maximum either.
    let l = Limits {
        memory_bytes: u64::MAX,
        ..limits()
    };
    let r = f.run(HOG, b"", l);
    assert_eq!(r.error_class, Some(ErrorClass::MemoryLimit), "{r:?}");
    assert_eq!(
        r.message,
        format!("memory limit of {} bytes reached", 64 << 20)
    );
}

#[test]
fn traps_keep_their_own_message() {
    let f = open(1);
    let r = f.run(UNREACHABLE, b"", limits());
    assert_eq!(r.error_class, Some(ErrorClass::Trap), "{r:?}");
    assert_eq!(
        r.message,
        "wasm trap: wasm `unreachable` instruction executed"
    );
    let r = f.run(RECURSE, b"", limits());
    assert_eq!(r.error_class, Some(ErrorClass::Trap), "{r:?}");
    assert_eq!(r.message, "wasm trap: call stack exhausted");
}

#[test]
fn exit_status() {
    let f = open(1);
    let r = f.run(&exit_with(7), b"", limits());
    assert_eq!(r.error_class, Some(ErrorClass::Exit(7)), "{r:?}");
    assert_eq!(r.exit_code, Some(7));
    assert_eq!(r.message, "exited with status 7");
    let r = f.run(&exit_with(0), b"", limits());
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.exit_code, Some(0));
}

#[test]
fn output_limit() {
    let f = open(1);
    let r = f.run(FLOOD, b"", limits());
    assert_eq!(r.error_class, Some(ErrorClass::OutputLimit), "{r:?}");
    assert_eq!(r.message, "output exceeded the limit of 1024 bytes");
    assert!(r.output.is_empty());

    // Exactly the bound is fine.
    let r = f.run(ECHO, &[b'x'; 1024], limits());
    assert!(r.is_success(), "{r:?}");
    assert_eq!(r.output.len(), 1024);
}

#[test]
fn invalid_modules_are_refused_at_upload() {
    let f = open(1);
    let refused = |bytes: &[u8]| match f.exec.put_module(bytes) {
        Err(e @ ExecError::InvalidModule(_)) => e.to_string(),
        other => panic!("expected InvalidModule, got {other:?}"),
    };
    let msg = refused(b"garbage, not wasm");
    assert!(msg.contains("not a WebAssembly binary"), "{msg}");
    let msg = refused(ECHO.as_bytes());
    assert!(msg.contains("WAT"), "{msg}");
    let msg = refused(b"\0asm\x01\x00\x00\x00\xff\xff");
    assert!(msg.starts_with("invalid module: "), "{msg}");

    let msg = refused(&wasm(
        r#"(module (import "env" "nope" (func)) (func (export "_start")))"#,
    ));
    assert!(msg.contains("`env.nope`"), "{msg}");
    let msg = refused(&wasm(
        r#"(module (import "wasi_snapshot_preview1" "nope" (func)) (func (export "_start")))"#,
    ));
    assert!(msg.contains("nope"), "{msg}");
    let msg = refused(&wasm(r#"(module (func (export "main")))"#));
    assert!(msg.contains("`_start`"), "{msg}");

    let big = vec![0u8; (1 << 20) + 1];
    assert!(matches!(
        f.exec.put_module(&big),
        Err(ExecError::TooLarge { max: 1048576, .. })
    ));
    assert!(f.exec.modules().is_empty());
    // Only the three valid-but-unrunnable modules were compiled (their
    // imports and exports are checked on the compiled module); none is kept.
    assert_eq!(f.exec.stats().modules_compiled, 3);
    assert_eq!(
        std::fs::read_dir(f.dir.path().join("modules"))
            .expect("dir")
            .count(),
        0
    );
}

#[test]
fn module_missing() {
    let f = open(1);
    let r = f
        .exec
        .run_here(&request(ModuleHash::of(b"nothing"), b"", limits()));
    assert_eq!(r.error_class, Some(ErrorClass::ModuleMissing), "{r:?}");
    assert!(r.message.contains("not on this node"), "{}", r.message);
}

#[test]
fn modules_are_compiled_once_and_removable() {
    let f = open(1);
    let bytes = wasm(ECHO);
    let a = f.exec.put_module(&bytes).expect("put");
    assert!(a.compiled_now);
    assert_eq!(a.hash, ModuleHash::of(&bytes));
    assert_eq!(a.size, bytes.len() as u64);
    let b = f.exec.put_module(&bytes).expect("put again");
    assert!(!b.compiled_now);
    assert_eq!(f.exec.stats().modules_compiled, 1);
    assert_eq!(f.exec.modules(), vec![(a.hash, a.size)]);
    assert!(f.exec.has_module(&a.hash));

    assert!(f.exec.remove_module(&a.hash).expect("remove"));
    assert!(!f.exec.has_module(&a.hash));
    assert!(!f.exec.remove_module(&a.hash).expect("remove again"));
    let r = f.exec.run_here(&request(a.hash, b"x", limits()));
    assert_eq!(r.error_class, Some(ErrorClass::ModuleMissing));
    let files = std::fs::read_dir(f.dir.path().join("modules"))
        .expect("dir")
        .count()
        + std::fs::read_dir(f.dir.path().join("artifacts"))
            .expect("dir")
            .count();
    assert_eq!(files, 0);
}

#[test]
fn restart_loads_artifacts_without_compiling() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (tx, _rx) = unbounded_channel();
    let exec = Executor::open(config(1), dir.path(), tx).expect("open");
    let hash = exec.put_module(&wasm(ECHO)).expect("put").hash;
    drop(exec);

    let (tx, _rx) = unbounded_channel();
    let exec = Executor::open(config(1), dir.path(), tx).expect("reopen");
    let s = exec.stats();
    assert_eq!((s.modules_loaded, s.modules_compiled), (1, 0));
    let r = exec.run_here(&request(hash, b"again", limits()));
    assert_eq!(r.output, b"again");
    drop(exec);

    // A damaged artifact is recompiled and rewritten, never trusted.
    let artifacts = dir.path().join("artifacts");
    for e in std::fs::read_dir(&artifacts).expect("dir") {
        std::fs::write(e.expect("entry").path(), b"damaged").expect("write");
    }
    let (tx, _rx) = unbounded_channel();
    let exec = Executor::open(config(1), dir.path(), tx).expect("reopen");
    let s = exec.stats();
    assert_eq!((s.modules_loaded, s.modules_compiled), (0, 1));
    let r = exec.run_here(&request(hash, b"still", limits()));
    assert_eq!(r.output, b"still");
    drop(exec);
    let (tx, _rx) = unbounded_channel();
    let exec = Executor::open(config(1), dir.path(), tx).expect("reopen");
    assert_eq!(exec.stats().modules_loaded, 1);
}

#[test]
fn a_spinning_job_does_not_hold_up_another_thread() {
    let mut f = open(2);
    let spin = f.put(SPIN);
    let echo = f.put(ECHO);
    let slow = request(
        spin,
        b"",
        Limits {
            fuel: u64::MAX,
            deadline_ms: 2_000,
            ..limits()
        },
    );
    let quick = request(echo, b"quick", limits());
    f.exec.submit(slow.clone());
    std::thread::sleep(Duration::from_millis(20));
    let t = Instant::now();
    f.exec.submit(quick.clone());
    let first = f.done.blocking_recv().expect("a result");
    assert_eq!(first.job, quick.job);
    assert!(
        t.elapsed() < Duration::from_millis(1_000),
        "{:?}",
        t.elapsed()
    );
    let second = f.done.blocking_recv().expect("a result");
    assert_eq!(second.job, slow.job);
    assert_eq!(second.result.error_class, Some(ErrorClass::Deadline));
}

#[test]
fn shutdown_returns_queued_jobs_and_refuses_new_ones() {
    let mut f = open(1);
    let spin = f.put(SPIN);
    let slow = Limits {
        fuel: u64::MAX,
        deadline_ms: 200,
        ..limits()
    };
    let running = request(spin, b"", slow);
    let queued = request(spin, b"", slow);
    f.exec.submit(running.clone());
    std::thread::sleep(Duration::from_millis(20));
    f.exec.submit(queued.clone());
    f.exec.shutdown();
    let mut got = Vec::new();
    while let Ok(d) = f.done.try_recv() {
        got.push((d.job, d.result.error_class));
    }
    assert!(
        got.contains(&(queued.job, Some(ErrorClass::Internal))),
        "{got:?}"
    );
    assert!(
        got.contains(&(running.job, Some(ErrorClass::Deadline))),
        "{got:?}"
    );
    let late = request(spin, b"", slow);
    f.exec.submit(late.clone());
    let d = f.done.try_recv().expect("refused at once");
    assert_eq!(
        (d.job, d.result.error_class),
        (late.job, Some(ErrorClass::Internal))
    );
}

/// CVE-2022-39393: pooled memory slots are reused, and a job must never see
/// what an earlier job left in one (grown pages included).
#[test]
fn a_job_never_sees_an_earlier_jobs_memory() {
    for memory_cow in [true, false] {
        never_sees_an_earlier_jobs_memory(memory_cow);
    }
}

fn never_sees_an_earlier_jobs_memory(memory_cow: bool) {
    let mut f = open_with(ExecConfig {
        memory_cow,
        ..config(2)
    });
    let snoop = f.put(SNOOP);
    // The same code under another hash: a slot taken by the other module
    // (its image swapped, or its segments copied in) is clean too.
    let other = f.put(&SNOOP.replacen(
        "(memory (export \"memory\") 1)",
        "(memory (export \"memory\") 1) (func $unused)",
        1,
    ));
    assert_ne!(snoop, other);
    let zero = 0i64.to_le_bytes().to_vec();
    for i in 0..50 {
        let (writer, reader) = if i % 2 == 0 {
            (snoop, other)
        } else {
            (other, snoop)
        };
        let w = f.exec.run_here(&request(writer, b"w", limits()));
        assert!(w.is_success(), "{w:?}");
        let r = f.exec.run_here(&request(reader, b"r", limits()));
        assert!(r.is_success(), "{r:?}");
        assert_eq!(r.output, zero, "memory_cow {memory_cow}");
    }
    for _ in 0..50 {
        let w = f.exec.run_here(&request(snoop, b"w", limits()));
        assert!(w.is_success(), "{w:?}");
        let r = f.exec.run_here(&request(snoop, b"r", limits()));
        assert!(r.is_success(), "{r:?}");
        assert_eq!(r.output, zero);
    }
    // The same through the executor threads, writers and readers mixed.
    for i in 0..100 {
        let body: &[u8] = if i % 2 == 0 { b"w" } else { b"r" };
        f.exec.submit(request(snoop, body, limits()));
    }
    for _ in 0..100 {
        let d = f.done.blocking_recv().expect("a result");
        assert!(d.result.is_success(), "{:?}", d.result);
        if !d.result.output.is_empty() {
            assert_eq!(d.result.output, zero);
        }
    }
}

/// A cancelled run stops with class `cancelled` long before its deadline,
/// whether it spins in Wasm or sleeps in a host call; a job cancelled
/// before a thread took it never starts.
#[test]
fn cancel_stops_a_running_job() {
    let mut f = open(1);
    let l = Limits {
        fuel: u64::MAX,
        deadline_ms: 60_000,
        ..limits()
    };
    for module in [f.put(SPIN), f.put(&sleeper(60_000))] {
        let req = request(module, b"", l);
        let id = req.job;
        let t = Instant::now();
        f.exec.submit(req);
        // Let it start (bounded), then cancel it.
        std::thread::sleep(Duration::from_millis(100));
        assert!(f.exec.cancel(&id), "the executor holds the job");
        let d = f.done.blocking_recv().expect("a result");
        assert_eq!(d.job, id);
        assert_eq!(d.result.error_class, Some(ErrorClass::Cancelled), "{d:?}");
        assert!(t.elapsed() < Duration::from_secs(5), "{:?}", t.elapsed());
        assert!(!f.exec.cancel(&id), "forgotten once finished");
    }
    // Queued behind a spinner on the one thread: cancelled before it runs.
    let spin = request(f.put(SPIN), b"", l);
    let queued = request(f.put(&sleeper(60_000)), b"", l);
    let (spin_id, queued_id) = (spin.job, queued.job);
    f.exec.submit(spin);
    f.exec.submit(queued);
    assert!(f.exec.cancel(&queued_id));
    assert!(f.exec.cancel(&spin_id));
    for _ in 0..2 {
        let d = f.done.blocking_recv().expect("a result");
        assert_eq!(d.result.error_class, Some(ErrorClass::Cancelled), "{d:?}");
    }
}

/// The executor's share of tenant group `group`, of weight 1.
fn tenant(group: u32) -> super::Share {
    super::Share { group, weight: 1 }
}

/// Tenants' order in the executor's queue (`share.rs`): with one thread
/// and four of a heavy group's jobs handed over before a light group's
/// one, the light job finishes before heavy's second. Heavy's first
/// sleeps 300 ms so that the thread is still in it when the light job
/// comes (with quick jobs only, a busy machine could let the thread
/// finish heavy's first and take its second before the light one is
/// handed over). Every job is run once.
#[test]
fn a_light_tenants_job_goes_ahead_of_queued_heavy_ones() {
    let mut f = open(1);
    let echo = f.put(ECHO);
    let slow = f.put(&sleeper(300));
    let heavy = tenant(1);
    let light = tenant(2);
    let mut heavy_jobs = Vec::new();
    for i in 0..4u8 {
        let module = if i == 0 { slow } else { echo };
        let mut r = request(module, &[b'h', i], limits());
        r.share = heavy;
        heavy_jobs.push(r.job);
        f.exec.submit(r);
    }
    let mut l = request(echo, b"l", limits());
    l.share = light;
    f.exec.submit(l.clone());
    let order: Vec<JobId> = (0..5)
        .map(|_| {
            let d = f.done.blocking_recv().expect("a result");
            assert!(d.result.is_success(), "{:?}", d.result);
            d.job
        })
        .collect();
    let at = |job: &JobId| order.iter().position(|j| j == job).expect("ran");
    assert!(at(&l.job) < at(&heavy_jobs[1]), "{order:?}");
    // Heavy's keep their order.
    let heavy_order: Vec<usize> = heavy_jobs.iter().map(at).collect();
    assert!(heavy_order.is_sorted(), "{order:?}");
}

/// Preemption (`run::SetAside`): with one thread busy with a heavy
/// group's long run, a light group's jobs handed over later run ahead of
/// it, on the same thread, instead of waiting for it to end; the heavy
/// run's deadline does not count the time it was set aside, and it still
/// ends on that deadline. A job of the running job's own group never goes
/// ahead of it.
#[test]
fn a_light_tenants_job_runs_ahead_of_a_running_heavy_one() {
    let mut f = open(1);
    let spin = f.put(SPIN);
    let echo = f.put(ECHO);
    let heavy = tenant(1);
    let light = tenant(2);
    let short = |ms| Limits {
        deadline_ms: ms,
        ..limits()
    };
    let mut h = request(spin, b"", short(300));
    h.share = heavy;
    // Heavy has more in hand than light's two: light goes first.
    let heavy_echo: Vec<ExecRequest> = (0..3u8)
        .map(|i| {
            let mut r = request(echo, &[b'h', i], limits());
            r.share = heavy;
            r
        })
        .collect();
    let mut l_spin = request(spin, b"", short(100));
    l_spin.share = light;
    let mut l_echo = request(echo, b"l", limits());
    l_echo.share = light;

    let start = Instant::now();
    f.exec.submit(h.clone());
    std::thread::sleep(Duration::from_millis(50));
    for r in &heavy_echo {
        f.exec.submit(r.clone());
    }
    f.exec.submit(l_spin.clone());
    f.exec.submit(l_echo.clone());
    let mut ended = Vec::new();
    for _ in 0..6 {
        let d = f.done.blocking_recv().expect("a result");
        ended.push((d.job, d.result, start.elapsed()));
    }
    let order: Vec<JobId> = ended.iter().map(|e| e.0).collect();
    let mut want = vec![l_spin.job, l_echo.job, h.job];
    want.extend(heavy_echo.iter().map(|r| r.job));
    assert_eq!(order, want);
    let (_, light_spin, _) = &ended[0];
    assert_eq!(
        light_spin.error_class,
        Some(ErrorClass::Deadline),
        "{light_spin:?}"
    );
    assert_eq!(ended[1].1.output, b"l");
    let (_, heavy_spin, heavy_end) = &ended[2];
    assert_eq!(
        heavy_spin.error_class,
        Some(ErrorClass::Deadline),
        "{heavy_spin:?}"
    );
    // 300 ms of its own deadline plus at least the 100 ms set aside.
    assert!(*heavy_end >= Duration::from_millis(400), "{heavy_end:?}");
    // Its duration is its own run, not the time it was set aside.
    assert!(
        heavy_spin.duration_us < u64::try_from(heavy_end.as_micros()).unwrap_or(0) - 90_000,
        "{heavy_spin:?} ended at {heavy_end:?}"
    );
    assert_eq!(ended[3].1.output, b"h\0");
    assert_eq!(f.exec.stats().ran_ahead, 2);
}

/// A job run ahead exhausts its own Wasm stack, above the set-aside run's
/// frames: it ends as a trap, and the run under it goes on to its own end.
#[test]
fn a_job_run_ahead_that_exhausts_its_stack_fails_alone() {
    let mut f = open(1);
    let spin = f.put(SPIN);
    let recurse = f.put(RECURSE);
    let echo = f.put(ECHO);
    let mut h = request(
        spin,
        b"",
        Limits {
            deadline_ms: 200,
            ..limits()
        },
    );
    h.share = tenant(1);
    f.exec.submit(h.clone());
    for i in 0..3u8 {
        let mut r = request(echo, &[i], limits());
        r.share = h.share;
        f.exec.submit(r);
    }
    std::thread::sleep(Duration::from_millis(30));
    let mut l = request(recurse, b"", limits());
    l.share = tenant(2);
    f.exec.submit(l.clone());
    let first = f.done.blocking_recv().expect("a result");
    assert_eq!(first.job, l.job);
    assert_eq!(first.result.message, "wasm trap: call stack exhausted");
    let second = f.done.blocking_recv().expect("a result");
    assert_eq!(second.job, h.job);
    assert_eq!(
        second.result.error_class,
        Some(ErrorClass::Deadline),
        "{second:?}"
    );
    for _ in 0..3 {
        let d = f.done.blocking_recv().expect("a result");
        assert!(d.result.is_success(), "{d:?}");
    }
}
