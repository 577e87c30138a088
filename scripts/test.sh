#!/usr/bin/env bash
# Runs wasque's whole test suite: unit tests, and integration tests that
# start real nodes and run the example guests (built on first use for
# wasm32-wasip1, a target this script adds if it is missing).
#
# A few tests drive programs from outside Rust: headless Chromium and
# Node.js (the dashboard in a browser), redis-cli (RESP smoke test), and
# the C and AssemblyScript compilers (guests in other languages).
# They are #[ignore]d, so plain `cargo test` lists them as ignored; this
# script installs what they need (as root with apt-get, and `npm ci` in
# tests/browser), or stops before any test with the line that installs
# it, then runs them too (only without arguments: with them, it is
# `cargo test --workspace ARGS`). WASQUE_SKIP_TOOL_TESTS=1 runs without them:
# they are then reported as ignored, never as passed.
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1
fi

chromium=${CHROMIUM:-/usr/bin/chromium}
apt_install() {
    if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
        if [[ -z ${apt_updated:-} ]]; then
            apt-get update -qq
            apt_updated=1
        fi
        apt-get install -y -qq "$@" >/dev/null
    fi
}
# With arguments (say `-p wasque-node`) the run is the caller's choice:
# only `cargo test --workspace ARGS`, the outside-program tests left ignored.
if (($#)); then
    exec cargo test --workspace "$@"
fi
missing=()
if [[ ${WASQUE_SKIP_TOOL_TESTS:-} != 1 ]]; then
    command -v redis-cli >/dev/null || apt_install redis-tools || true
    command -v redis-cli >/dev/null || missing+=("redis-cli: apt-get install redis-tools")
    # Debian's Chromium; playwright-core drives it, it never downloads one.
    [[ -x $chromium ]] || apt_install chromium || true
    [[ -x $chromium ]] || missing+=("chromium: apt-get install chromium (or set CHROMIUM=/path/to/chromium)")
    command -v node >/dev/null && command -v npm >/dev/null || apt_install nodejs npm || true
    if command -v node >/dev/null && command -v npm >/dev/null; then
        if [[ ! -f tests/browser/node_modules/playwright-core/package.json ]]; then
            (cd tests/browser && npm ci --no-audit --no-fund --loglevel=error) ||
                missing+=("playwright-core: (cd tests/browser && npm ci)")
        fi
        # The AssemblyScript guests' compiler (guest-examples/assemblyscript).
        if [[ ! -f guest-examples/assemblyscript/node_modules/assemblyscript/package.json ]]; then
            (cd guest-examples/assemblyscript && npm ci --no-audit --no-fund --loglevel=error) ||
                missing+=("assemblyscript: (cd guest-examples/assemblyscript && npm ci)")
        fi
    else
        missing+=("node, npm: apt-get install nodejs npm")
    fi
    # The C guests (guest-examples/c): clang's wasm32-wasi target, wasm-ld
    # and wasi-libc; checked by compiling an empty program.
    c_wasm_ok() {
        echo 'int main(void) { return 0; }' |
            clang --target=wasm32-wasi -x c - -o /dev/null 2>/dev/null
    }
    c_wasm_ok || apt_install clang lld wasi-libc libclang-rt-dev-wasm32 || true
    c_wasm_ok || missing+=("clang for wasm32-wasi: apt-get install clang lld wasi-libc libclang-rt-dev-wasm32")
    # `ip` and `tc` for the network-namespace cluster test (it skips with a
    # message where they, or root, are missing; not required).
    command -v tc >/dev/null || apt_install iproute2 || true
    if ((${#missing[@]})); then
        echo "scripts/test.sh: some tests need programs that are not installed:" >&2
        printf '  %s\n' "${missing[@]}" >&2
        echo "Install them (as root, apt-get installs them for you), or run" \
            "WASQUE_SKIP_TOOL_TESTS=1 bash scripts/test.sh to report those tests as ignored." >&2
        exit 1
    fi
fi

cargo test --workspace
if [[ ${WASQUE_SKIP_TOOL_TESTS:-} == 1 ]]; then
    echo "scripts/test.sh: WASQUE_SKIP_TOOL_TESTS=1: the dashboard browser tests, redis_cli_smoke and the C and AssemblyScript guest tests were NOT run (ignored above)" >&2
else
    # The tests that need those programs (ignored in the run above).
    cargo test -p wasque-tests --test dashboard --test resp_conformance --test guest_langs -- --ignored
fi
# The soak run's short version (benches/src/bin/soak.rs; the long one is
# documented in benches/README.md): 3 nodes under mixed load for a minute,
# one killed and restarted every 20 s; it fails if a node's open files or
# memory grow past a wide margin, or no request completes.
cargo build -p wasque-benches --bin soak
"${CARGO_TARGET_DIR:-target}/debug/soak" 1 20 --check
