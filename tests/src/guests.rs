//! The example guest modules, built on first use.
//!
//! `guest-examples/` is its own cargo workspace for `wasm32-wasip1` with its
//! own target dir, so building it from a test never waits on the lock of the
//! outer build. Concurrent test processes serialise on cargo's own lock and
//! then find everything fresh.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

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
