#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/, libFuzzer with SanitizerCoverage on stable
# Rust, see fuzz/README.md) and runs each for SECONDS (default 30), starting
# from its committed corpus (fuzz/corpus/<target>, read only; new inputs go
# to fuzz/target/corpus/<target>). Fails on any crash, timeout or leak of
# memory past the bound; the input is saved under fuzz/target/artifacts/.
#   scripts/fuzz.sh [SECONDS] [TARGET...]
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
secs=${1:-30}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    targets=(resp_frame client_frame peer_wire config wasi_calls)
fi

# The fuzz workspace uses the root workspace's profile, so the dependencies
# the root build compiled (wasmtime, cranelift, ...) are reused rather than
# built again: seed fuzz/target from target/ the first time.
if [ ! -d target/debug/deps ] && [ -d ../target/debug/deps ]; then
    mkdir -p target/debug
    cp -a ../target/debug/deps ../target/debug/build ../target/debug/.fingerprint target/debug/
fi
t0=$(date +%s)
# Not --locked: fuzz/Cargo.lock follows the root's, and a dependency the
# node gains is added to it here rather than failing the build.
RUSTC_WRAPPER="$PWD/rustc-sancov" cargo build --bins
echo "fuzz build took $(($(date +%s) - t0)) s"

failed=0
for t in "${targets[@]}"; do
    mkdir -p "target/corpus/$t" "target/artifacts/$t" target/logs
    log="target/logs/$t.log"
    if "./target/debug/$t" "target/corpus/$t" "corpus/$t" \
        -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
        -artifact_prefix="target/artifacts/$t/" -print_final_stats=1 >"$log" 2>&1; then
        runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log")
        speed=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log")
        cov=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -1 | grep -o 'cov: [0-9]* ft: [0-9]*' || true)
        echo "fuzz $t: ok, $runs runs, $speed exec/s, $cov"
    else
        echo "fuzz $t: FAILED (log $PWD/$log):"
        tail -40 "$log"
        failed=1
    fi
done
exit $failed
