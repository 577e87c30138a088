#!/usr/bin/env bash
# ADDJOB on a fresh wasque node against LPUSH on a fresh redis-server, in
# interleaved rounds (issue 23's "defaults" and "pipelines" rows): one
# round starts both servers, runs redis-benchmark against the node then
# against redis with the same flags, and stops both, so no round inherits
# another's heap or queue. Prints each round's line, its ratio and the
# median ratio; raw output goes to benches/runs/resp-rounds-<date>.txt.
#
#   benches/resp_rounds.sh                       # node defaults, P1, 5 rounds
#   P=16 N=300000 CONFIG=nolog benches/resp_rounds.sh   # `appendonly no`
#   NO_BUILD=1 BIN=other/wasque-node OUT=file benches/resp_rounds.sh  # another build, for A/B
#   REDIS_AOF=1 benches/resp_rounds.sh           # redis-server with its AOF
#
# CONFIG=defaults (the default) runs the node with no config file, as a
# user does: `appendonly yes`, `appendfsync everysec`. CONFIG=nolog writes
# `appendonly no`, the same durability as the redis-server here
# (`--save '' --appendonly no`). Either way the node serves HTTP, as it
# does by default (metrics, dashboard: every job event is counted), on
# HPORT; HPORT=0 turns HTTP off, as every run before 2026-12-07 18:30
# did. REDIS_AOF=1 gives redis-server the node's default durability
# (`--appendonly yes --appendfsync everysec`, in the temp dir) instead of
# none: issue 23's rows compare with `--appendonly no`, this shows what
# the log costs each of them. Needs redis-server and redis-benchmark.
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
P=${P:-1}
N=${N:-200000}
C=${C:-50}
CONFIG=${CONFIG:-defaults}
for c in redis-server redis-benchmark redis-cli; do
    command -v "$c" >/dev/null || { echo "$c is missing (apt-get install redis-server redis-tools)"; exit 2; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p wasque-node --bin wasque-node
BIN=${BIN:-target/release/wasque-node}
WPORT=${WPORT:-17711}
RPORT=${RPORT:-17379}
HPORT=${HPORT:-17780}
. benches/servers.sh
wait_closed() {
    for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 || return 0; sleep 0.1; done
}
start_wasque() {
    rm -rf "$TMP/data"
    local args=(--port "$WPORT" --http-port "$HPORT" --data-dir "$TMP/data")
    if [ "$CONFIG" = nolog ]; then
        printf 'appendonly no\n' > "$TMP/wasque.conf"
        args=("$TMP/wasque.conf" "${args[@]}")
    fi
    "$BIN" "${args[@]}" > "$TMP/wasque.out" 2>&1 &
    WPID=$!
    wait_port "$WPORT" || { cat "$TMP/wasque.out"; exit 1; }
}
REDIS_LOG=(--appendonly no)
[ -z "${REDIS_AOF:-}" ] || REDIS_LOG=(--appendonly yes --appendfsync everysec)
start_redis() {
    rm -rf "$TMP/redis" && mkdir -p "$TMP/redis"
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' "${REDIS_LOG[@]}" --daemonize no \
        --dir "$TMP/redis" > "$TMP/redis.out" 2>&1 &
    RPID=$!
    wait_port "$RPORT"
}
# CPU time a process has used, in microseconds (utime + stime).
cpu_us() {
    awk -v hz="$(getconf CLK_TCK)" '{ printf "%d", ($14 + $15) * 1000000 / hz }' "/proc/$1/stat"
}
per_op() { awk -v a="$1" -v b="$2" -v n="$N" 'BEGIN { printf "%.1f", (b - a) / n }'; }
stop() {
    kill "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
}
BODY=$(head -c 75 /dev/urandom | base64 -w0 | head -c 100)
OUT=${OUT:-benches/runs/resp-rounds-$(date +%Y%m%d-%H%M%S).txt}
mkdir -p "$(dirname "$OUT")"
ratios=()
{
    echo "# ADDJOB (wasque-node, config: $CONFIG, HTTP port $HPORT) vs LPUSH (redis-server --save '' ${REDIS_LOG[*]}), redis-benchmark -c $C -n $N -P $P, 100-byte body, $ROUNDS interleaved rounds on fresh servers, $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "# machine: $(nproc) cores, $(redis-server --version | cut -d' ' -f3), load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "# csv: test, rps, avg_ms, min_ms, p50_ms, p95_ms, p99_ms, max_ms"
    for r in $(seq "$ROUNDS"); do
        start_wasque
        c0=$(cpu_us "$WPID")
        # (redis-benchmark warns on stderr that it cannot read the node's CONFIG)
        w=$(redis-benchmark -p "$WPORT" -c "$C" -n "$N" -P "$P" --csv ADDJOB bench "$BODY" 0 2>/dev/null | tail -1)
        wcpu=$(per_op "$c0" "$(cpu_us "$WPID")")
        stop "$WPID"; WPID=
        wait_closed "$WPORT"
        start_redis
        c0=$(cpu_us "$RPID")
        l=$(redis-benchmark -p "$RPORT" -c "$C" -n "$N" -P "$P" --csv LPUSH bench "$BODY" | tail -1)
        lcpu=$(per_op "$c0" "$(cpu_us "$RPID")")
        stop "$RPID"; RPID=
        wait_closed "$RPORT"
        wr=$(echo "$w" | cut -d, -f2 | tr -d '"')
        lr=$(echo "$l" | cut -d, -f2 | tr -d '"')
        ratio=$(awk -v a="$wr" -v b="$lr" 'BEGIN { printf "%.3f", a / b }')
        ratios+=("$ratio")
        echo "round $r wasque: $w"
        echo "round $r redis:  $l"
        echo "round $r ratio: $ratio; server CPU per request: wasque $wcpu us, redis $lcpu us"
    done
    echo "median ratio: $(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }')"
} | tee "$OUT"
