#!/usr/bin/env bash
# Durability benchmarks (issue 5), all in one run so the costs are ratios:
#
# 1. ADDJOB ops/s and p99 with 50 clients (redis-benchmark, pipeline 1)
#    with `appendonly no`, `appendfsync everysec`, `appendfsync always`.
# 2. Bytes on disk per queued 100-byte job, recovery time after kill -9
#    for JOBS_SMALL and JOBS jobs (start until the node answers PING, and
#    the node's own "job store recovered" figure), disk size before and
#    after removing every job (DEBUG FLUSHALL goes through the same removal
#    as ACKJOB: one delete per job in the store).
#
# Needs redis-benchmark and redis-cli (Debian: redis-tools). Raw output goes
# to benches/runs/durability-<date>.txt.
#
# BASELINE=path/to/an/older/wasque-node runs part 1 with it too, each mode
# with both binaries one after the other, so a change to the write path is
# compared within one run.
#
#   benches/durability.sh               # 1,000,000 jobs
#   JOBS=100000 N=50000 benches/durability.sh
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1000000}
JOBS_SMALL=${JOBS_SMALL:-100000}
N=${N:-200000}
for c in redis-benchmark redis-cli; do
    command -v "$c" >/dev/null || { echo "$c is missing (apt-get install redis-tools)"; exit 2; }
done
cargo build --release -q -p wasque-node -p wasque-benches --bin wasque-node --bin resp_load
BIN=target/release
TMP=$(mktemp -d "${BENCH_TMP:-/tmp}/wasque-durability.XXXXXX")
PORT=${PORT:-17721}
cleanup() {
    [ -n "${WPID:-}" ] && kill "$WPID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

start() { # start CONF DATA [BINARY]
    "${3:-$BIN/wasque-node}" "$1" --port "$PORT" --http-port 0 --data-dir "$2" \
        --enable-debug-command > "$TMP/node.out" 2> "$TMP/node.err" &
    WPID=$!
    for _ in $(seq 600); do redis-cli -p "$PORT" PING >/dev/null 2>&1 && return; sleep 0.01; done
    echo "wasque-node did not start"; cat "$TMP/node.err"; exit 1
}
stop() { kill "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=; }
kill9() { kill -9 "$WPID"; wait "$WPID" 2>/dev/null || true; WPID=; }
store_bytes() { du -sb "$1/store" | cut -f1; }
store_alloc() { du -sk "$1/store" | awk '{print $1 * 1024}'; }

BODY=$(head -c 75 /dev/urandom | base64 -w0 | head -c 100)
OUT="benches/runs/durability-$(date +%Y%m%d-%H%M%S).txt"
mkdir -p benches/runs
{
echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {print $2/1024/1024 " GiB"}' /proc/meminfo), disk: $(df -T "$TMP" | awk 'NR==2 {print $2}')"
echo "## ADDJOB c50 P1 n$N, 100-byte body"
for mode in "appendonly no" "appendfsync everysec" "appendfsync always"; do
    for node in ${BASELINE:+"$BASELINE"} "$BIN/wasque-node"; do
        printf '%s\n' "$mode" > "$TMP/w.conf"
        rm -rf "$TMP/data"
        start "$TMP/w.conf" "$TMP/data" "$node"
        label=""
        [ -n "${BASELINE:-}" ] && label=" ($([ "$node" = "$BASELINE" ] && echo baseline || echo this build))"
        printf '%s,' "$mode$label"
        redis-benchmark -p "$PORT" -c 50 -n "$N" -P 1 --csv ADDJOB bench "$BODY" 0 | tail -1
        stop
    done
done

printf 'appendfsync everysec\n' > "$TMP/w.conf"
for jobs in "$JOBS_SMALL" "$JOBS"; do
    echo "## $jobs queued 100-byte jobs, appendfsync everysec"
    rm -rf "$TMP/data"
    start "$TMP/w.conf" "$TMP/data"
    "$BIN/resp_load" fill "127.0.0.1:$PORT" disque "$jobs" 100 big
    sleep 2 # one everysec sync
    echo "store after fill: $(store_bytes "$TMP/data") bytes apparent, $(store_alloc "$TMP/data") allocated, $(( $(store_alloc "$TMP/data") / jobs )) bytes/job"
    kill9
    if [ -n "${BASELINE:-}" ]; then
        # The same killed store, read by the baseline first (on a copy:
        # opening a store changes its journal).
        rm -rf "$TMP/base"; cp -a "$TMP/data" "$TMP/base"; rm -f "$TMP/base/LOCK"
        t0=$(date +%s%N)
        start "$TMP/w.conf" "$TMP/base" "$BASELINE"
        t1=$(date +%s%N)
        echo "recovery after kill -9 (baseline): $(( (t1 - t0) / 1000000 )) ms to answer PING"
        stop
        rm -rf "$TMP/base"
    fi
    t0=$(date +%s%N)
    start "$TMP/w.conf" "$TMP/data"
    t1=$(date +%s%N)
    echo "recovery after kill -9: $(( (t1 - t0) / 1000000 )) ms to answer PING; QLEN big = $(redis-cli -p "$PORT" QLEN big)"
    grep -o 'job store recovered.*' "$TMP/node.err" | sed 's/\x1b\[[0-9;]*m//g' | tail -1
    stop
    t0=$(date +%s%N)
    start "$TMP/w.conf" "$TMP/data"
    t1=$(date +%s%N)
    echo "restart after a clean stop: $(( (t1 - t0) / 1000000 )) ms to answer PING"
    echo "store before removing all: $(store_alloc "$TMP/data") bytes allocated"
    t0=$(date +%s%N)
    redis-cli -p "$PORT" DEBUG FLUSHALL >/dev/null
    sleep 2
    echo "store after removing all ($jobs deletes), 2 s later: $(store_alloc "$TMP/data") bytes allocated"
    # Compaction, then a rewrite once the writer is idle: wait for the
    # store to settle under 1 MiB (at most 20 s more).
    for _ in $(seq 40); do
        [ "$(store_alloc "$TMP/data")" -lt 1048576 ] && break
        sleep 0.5
    done
    t1=$(date +%s%N)
    echo "store after removing all: $(store_alloc "$TMP/data") bytes allocated $(( (t1 - t0) / 1000000 )) ms after DEBUG FLUSHALL"
    grep -o 'job store rewritten.*' "$TMP/node.err" | sed 's/\x1b\[[0-9;]*m//g' | tail -1 || true
    stop
    echo "store after a clean stop: $(store_alloc "$TMP/data") bytes allocated"
done
} 2>&1 | tee "$OUT"
