//! The example guest modules, built on first use.
//!
//! `guest-examples/` is its own cargo workspace for `wasm32-wasip1` with its
//! own target dir, so building it from a test never waits on the lock of the
//! outer build. Concurrent test processes serialise on cargo's own lock and
//! then find everything fresh.
//!
//! The guests in other languages (`guest-examples/c`, built with clang's
//! `wasm32-wasi` target and wasi-libc; `guest-examples/assemblyscript`,
//! built with the AssemblyScript compiler from npm) are built the same way
//! on first use by [`c_wasm`] and [`assemblyscript_wasm`], into
//! `guest-examples/target/{c,assemblyscript}/`. The tests that use them are
//! `#[ignore]`d like the other tool tests (see [`crate::tools`]).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

/// Path of the built example `name` (e.g. `"wordcount"`), building the
/// examples first if this process has not yet done so.
pub fn wasm_path(name: &str) -> PathBuf {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(build)
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "no guest example {name:?} at {}",
        path.display()
    );
    path
}

/// Bytes of the built example `name`.
pub fn wasm(name: &str) -> Vec<u8> {
    std::fs::read(wasm_path(name)).expect("built guest is readable")
}

/// Text of the WAT fixture `guest-examples/wat/NAME.wat`.
pub fn wat_text(name: &str) -> String {
    let p = repo_root()
        .join("guest-examples/wat")
        .join(format!("{name}.wat"));
    std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

fn build() -> Result<PathBuf, String> {
    let root = repo_root().join("guest-examples");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip1"])
        // Settings meant for the outer build must not leak into this one.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .map_err(|e| format!("cannot run cargo to build guest-examples: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "building guest-examples failed (is the wasm32-wasip1 target installed? `rustup target add wasm32-wasip1`):\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(root.join("target/wasm32-wasip1/release"))
}

/// Bytes of the example `name` built for `wasm32-wasip2`: a WASI preview 2
/// component (a `wasi:cli/command`) from the same source as the preview 1
/// module, for the component benchmark. Builds it on every call (cargo
/// finds it fresh after the first).
pub fn component(name: &str) -> Vec<u8> {
    let root = repo_root().join("guest-examples");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(&root)
        .args(["build", "--release", "--quiet", "--target", "wasm32-wasip2"])
        .args(["-p", name])
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("RUSTC_WRAPPER")
        .env_remove("RUSTC_WORKSPACE_WRAPPER")
        .output()
        .unwrap_or_else(|e| panic!("cannot run cargo to build {name} for wasm32-wasip2: {e}"));
    assert!(
        out.status.success(),
        "building {name} for wasm32-wasip2 failed (is the target installed? `rustup target add wasm32-wasip2`):\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    read_built(&root.join(format!("target/wasm32-wasip2/release/{name}.wasm")))
}

/// Bytes of the C guest `name` (`guest-examples/c/NAME.c`), building the C
/// guests with their Makefile first if this process has not yet done so.
/// Fails with the install line when the toolchain is missing.
pub fn c_wasm(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| {
            let src = repo_root().join("guest-examples/c");
            let out = repo_root().join("guest-examples/target/c");
            let mut make = Command::new("make");
            make.arg("-s").arg(format!("OUT={}", out.display()));
            run_bounded(
                make.current_dir(&src),
                Duration::from_secs(300),
                "make in guest-examples/c (needs clang, lld, wasi-libc: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32)",
            )?;
            Ok(out)
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    read_built(&dir.join(format!("{name}.wasm")))
}

/// Bytes of the AssemblyScript guest `name`
/// (`guest-examples/assemblyscript/NAME.ts`), running `npm ci` there if
/// the compiler is not installed yet and `npm run build` first if this
/// process has not yet done so.
pub fn assemblyscript_wasm(name: &str) -> Vec<u8> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let dir = BUILT
        .get_or_init(|| {
            let src = repo_root().join("guest-examples/assemblyscript");
            if !src
                .join("node_modules/assemblyscript/package.json")
                .exists()
            {
                run_bounded(
                    Command::new("npm")
                        .args(["ci", "--no-audit", "--no-fund"])
                        .current_dir(&src),
                    Duration::from_secs(300),
                    "npm ci in guest-examples/assemblyscript (needs Node.js and npm: apt-get install nodejs npm)",
                )?;
            }
            run_bounded(
                Command::new("npm")
                    .args(["run", "--silent", "build"])
                    .current_dir(&src),
                Duration::from_secs(300),
                "npm run build in guest-examples/assemblyscript",
            )?;
            Ok(repo_root().join("guest-examples/target/assemblyscript"))
        })
        .as_ref()
        .unwrap_or_else(|e| panic!("{e}"));
    read_built(&dir.join(format!("{name}.wasm")))
}

fn read_built(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("built guest {}: {e}", path.display()))
}

/// Runs `cmd` with its output in a log file, killing it by its own handle
/// if it is still running after `limit`; the error names `what` and
/// carries the log.
fn run_bounded(cmd: &mut Command, limit: Duration, what: &str) -> Result<(), String> {
    use std::io::{Read, Seek};
    let io = |e: std::io::Error| format!("{what}: log file: {e}");
    let mut log = tempfile::tempfile().map_err(io)?;
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(io)?)
        .stderr(log.try_clone().map_err(io)?)
        .spawn()
        .map_err(|e| format!("{what}: cannot start: {e}"))?;
    let deadline = Instant::now() + limit;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break s,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{what}: not done within {} s", limit.as_secs()));
            }
        }
    };
    if status.success() {
        return Ok(());
    }
    let mut text = Vec::new();
    log.rewind().map_err(io)?;
    log.read_to_end(&mut text).map_err(io)?;
    Err(format!(
        "{what} failed ({status}):\n{}",
        String::from_utf8_lossy(&text)
    ))
}
