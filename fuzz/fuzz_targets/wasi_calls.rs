//! The sandbox's WASI preview 1 (`exec/wasi.rs`, `exec/sleep.rs`) under
//! random host-call sequences from a guest, run through the executor's own
//! path (`Executor::put_module`, `Executor::run_here`) under small fuel,
//! memory, output and deadline bounds.
//!
//! The guest is one module that imports every `wasi_snapshot_preview1`
//! function and interprets a program it reads from its stdin, op by op:
//! one byte chooses a host call (or a memory store, or a memory.grow), the
//! next bytes are its arguments (an i32 as two bytes sign-extended, so
//! small pointers and wrapped-around ones are both near; an i64 as four
//! bytes sign-extended). Reading the program through `fd_read` keeps the
//! run deterministic even when a call scribbles over memory, and lets the
//! program's own fd_read/fd_close/fd_renumber calls cut it short.
//! Compiling one module per input would cost milliseconds an execution;
//! this guest is compiled once, so an execution costs one instantiation.
//!
//! A crash: a host panic; an error class that is not the guest's own
//! doing (`Internal`, `InvalidModule`, `ModuleMissing`, `Quota`); output or
//! stderr past their bounds; more fuel used than given; a run far past its
//! deadline.
#![no_main]

use std::fmt::Write as _;
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};
use wasque_node::exec::{ExecConfig, ExecDone, ExecRequest, Executor};
use wasque_sdk::proto::{ErrorClass, JobId, Limits, ModuleHash};

/// Every preview 1 function: name, parameter types (`I` = i32, `L` = i64),
/// whether it returns an errno.
const CALLS: &[(&str, &str, bool)] = &[
    ("args_get", "II", true),
    ("args_sizes_get", "II", true),
    ("environ_get", "II", true),
    ("environ_sizes_get", "II", true),
    ("clock_res_get", "II", true),
    ("clock_time_get", "ILI", true),
    ("fd_advise", "ILLI", true),
    ("fd_allocate", "ILL", true),
    ("fd_close", "I", true),
    ("fd_datasync", "I", true),
    ("fd_fdstat_get", "II", true),
    ("fd_fdstat_set_flags", "II", true),
    ("fd_fdstat_set_rights", "ILL", true),
    ("fd_filestat_get", "II", true),
    ("fd_filestat_set_size", "IL", true),
    ("fd_filestat_set_times", "ILLI", true),
    ("fd_pread", "IIILI", true),
    ("fd_prestat_get", "II", true),
    ("fd_prestat_dir_name", "III", true),
    ("fd_pwrite", "IIILI", true),
    ("fd_read", "IIII", true),
    ("fd_readdir", "IIILI", true),
    ("fd_renumber", "II", true),
    ("fd_seek", "ILII", true),
    ("fd_sync", "I", true),
    ("fd_tell", "II", true),
    ("fd_write", "IIII", true),
    ("path_create_directory", "III", true),
    ("path_filestat_get", "IIIII", true),
    ("path_filestat_set_times", "IIIILLI", true),
    ("path_link", "IIIIIII", true),
    ("path_open", "IIIIILLII", true),
    ("path_readlink", "IIIIII", true),
    ("path_remove_directory", "III", true),
    ("path_rename", "IIIIII", true),
    ("path_symlink", "IIIII", true),
    ("path_unlink_file", "III", true),
    ("poll_oneoff", "IIII", true),
    ("proc_exit", "I", false),
    ("proc_raise", "I", true),
    ("sched_yield", "", true),
    ("random_get", "II", true),
    ("sock_accept", "III", true),
    ("sock_recv", "IIIIII", true),
    ("sock_send", "IIIII", true),
    ("sock_shutdown", "II", true),
];

/// Where the interpreter keeps its iovec, byte count and fetched op.
const IOV: u32 = 0;
const NREAD: u32 = 8;
const SCRATCH: u32 = 16;

/// The interpreter guest, as WAT.
fn guest() -> String {
    let mut w = String::from("(module\n");
    for (i, (name, params, ret)) in CALLS.iter().enumerate() {
        let ps: Vec<&str> = params
            .chars()
            .map(|c| if c == 'L' { "i64" } else { "i32" })
            .collect();
        let _ = writeln!(
            w,
            "  (import \"wasi_snapshot_preview1\" \"{name}\" (func $f{i} (param {}) {}))",
            ps.join(" "),
            if *ret { "(result i32)" } else { "" }
        );
    }
    let fd_read = CALLS.iter().position(|c| c.0 == "fd_read").unwrap_or(0);
    let _ = writeln!(
        w,
        r#"  (memory (export "memory") 1)
  ;; Reads the next $n bytes of the program to SCRATCH; 0 at its end.
  (func $fetch (param $n i32) (result i32)
    (i32.store (i32.const {IOV}) (i32.const {SCRATCH}))
    (i32.store (i32.const {iov_len}) (local.get $n))
    (if (call $f{fd_read} (i32.const 0) (i32.const {IOV}) (i32.const 1) (i32.const {NREAD}))
      (then (return (i32.const 0))))
    (i32.eq (i32.load (i32.const {NREAD})) (local.get $n)))
  (func (export "_start")
    (local $op i32)
    (loop $next
      (if (i32.eqz (call $fetch (i32.const 1))) (then (return)))
      (local.set $op (i32.rem_u (i32.load8_u (i32.const {SCRATCH})) (i32.const {ops})))"#,
        iov_len = IOV + 4,
        ops = CALLS.len() + 2,
    );
    // Case blocks: br_table to $ck lands after that block's end, on case
    // k's code; the last case's code closes the loop instead of a block.
    let n = CALLS.len() + 2;
    for k in (0..n).rev() {
        let _ = writeln!(w, "      (block $c{k}");
    }
    let targets: Vec<String> = (0..n).map(|k| format!("$c{k}")).collect();
    let _ = writeln!(
        w,
        "        (br_table {} $c0 (local.get $op)))",
        targets.join(" ")
    );
    for k in 0..n {
        if let Some(&(_, params, ret)) = CALLS.get(k) {
            let len: u32 = params.chars().map(|c| if c == 'L' { 4 } else { 2 }).sum();
            if len > 0 {
                let _ = writeln!(
                    w,
                    "      (if (i32.eqz (call $fetch (i32.const {len}))) (then (return)))"
                );
            }
            let mut off = SCRATCH;
            let mut args = String::new();
            for c in params.chars() {
                if c == 'L' {
                    let _ = write!(args, " (i64.load32_s (i32.const {off}))");
                    off += 4;
                } else {
                    let _ = write!(args, " (i32.load16_s (i32.const {off}))");
                    off += 2;
                }
            }
            let call = format!("(call $f{k}{args})");
            if ret {
                let _ = writeln!(w, "      (drop {call})");
            } else {
                let _ = writeln!(w, "      {call}");
            }
        } else if k == CALLS.len() {
            // Store: a 4-byte value at an address in the first page.
            let _ = writeln!(
                w,
                "      (if (i32.eqz (call $fetch (i32.const 6))) (then (return)))
      (i32.store (i32.and (i32.load16_u (i32.const {SCRATCH})) (i32.const 0xfffc))
                 (i32.load (i32.const {a})))",
                a = SCRATCH + 2
            );
        } else {
            // Grow memory by 0..=7 pages (past the cap: refused).
            let _ = writeln!(
                w,
                "      (if (i32.eqz (call $fetch (i32.const 1))) (then (return)))
      (drop (memory.grow (i32.and (i32.load8_u (i32.const {SCRATCH})) (i32.const 7))))"
            );
        }
        let _ = writeln!(w, "      (br $next))");
    }
    w.push_str("  ))\n");
    w
}

const LIMITS: Limits = Limits {
    fuel: 200_000,
    memory_bytes: 4 << 16,
    deadline_ms: 10,
};
const MAX_OUTPUT: usize = 4096;
const MAX_STDERR: usize = 1024;

struct Sandbox {
    executor: Executor,
    module: ModuleHash,
    _done: UnboundedReceiver<ExecDone>,
}

fn sandbox() -> &'static Sandbox {
    static S: OnceLock<Sandbox> = OnceLock::new();
    S.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("wasque-fuzz-wasi-{}", std::process::id()));
        let (tx, rx) = unbounded_channel();
        let cfg = ExecConfig {
            threads: 1,
            max_memory_bytes: 1 << 20,
            max_output_bytes: MAX_OUTPUT,
            max_stderr_bytes: MAX_STDERR,
            max_module_bytes: 1 << 20,
            epoch_tick: Duration::from_millis(1),
            node_id: "fuzz".into(),
            ..ExecConfig::default()
        };
        let executor = Executor::open(cfg, &dir, tx).expect("executor opens");
        let wasm = wat::parse_str(guest()).expect("the interpreter guest assembles");
        let module = executor.put_module(&wasm).expect("the guest compiles").hash;
        // The compiled module stays in memory; its files are not needed.
        let _ = std::fs::remove_dir_all(&dir);
        Sandbox {
            executor,
            module,
            _done: rx,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let s = sandbox();
    let req = ExecRequest {
        job: JobId::compose(1_732_000_000_000, 1, 1, false, 3600, 0),
        attempt: 1,
        module: s.module,
        body: Bytes::copy_from_slice(data),
        args: vec!["a".into(), "bc".into()],
        limits: LIMITS,
        share: Default::default(),
    };
    let r = s.executor.run_here(&req);
    if std::env::var_os("WASQUE_FUZZ_SHOW").is_some() {
        eprintln!("{r:?}");
    }
    match r.error_class {
        None
        | Some(
            ErrorClass::OutOfFuel
            | ErrorClass::MemoryLimit
            | ErrorClass::Deadline
            | ErrorClass::Trap
            | ErrorClass::Exit(_)
            | ErrorClass::OutputLimit,
        ) => {}
        Some(c) => panic!("error class {c:?} from a guest's host calls: {}", r.message),
    }
    assert!(
        r.output.len() <= MAX_OUTPUT,
        "output of {} bytes",
        r.output.len()
    );
    assert!(
        r.stderr.len() <= MAX_STDERR,
        "stderr of {} bytes",
        r.stderr.len()
    );
    assert!(r.fuel_used <= LIMITS.fuel, "used {} fuel", r.fuel_used);
    assert!(
        r.duration_us < 1_000_000,
        "ran {} us past a {} ms deadline",
        r.duration_us,
        LIMITS.deadline_ms
    );
});
