#!/usr/bin/env bash
# Replication cost (issue 23), wasque beside Disque in the same run:
# ADDJOB REPLICATE 3 on three nodes against ADDJOB REPLICATE 1 on one node,
# 50 clients, pipeline 1, redis-benchmark with the same flags on both, in
# ROUNDS paired rounds (each round: wasque R1, wasque R3, Disque R1,
# Disque R3, every server started afresh). Prints each round and the
# median of the R3 / R1 ratios and of R3's p99.
#
# Disque is built from a fresh snapshot of its source in this script's
# temp dir and removed with it (never kept in this repository):
#   DISQUE_SRC=<git url or local git dir>   (default: the upstream repository)
#   NO_DISQUE=1                             wasque only
#   NO_BUILD=1 BIN=<dir holding wasque-node> OUT=<file>   another build, for A/B
#
#   bash benches/replication.sh             # 5 rounds, N=100000 adds a run
#   ROUNDS=1 N=30000 bash benches/replication.sh
#
# All servers run on this machine's cores with `appendonly no`, so three
# nodes have no more CPU than one: R3 / R1 is the cost of keeping three
# copies. Raw output: benches/runs/replication-<stamp>.txt.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-100000}
ROUNDS=${ROUNDS:-5}
CLIENTS=${CLIENTS:-50}
BASE=${BASE:-17821}
DBASE=${DBASE:-27821}
DISQUE_SRC=${DISQUE_SRC:-https://github.com/antirez/disque}
for c in redis-benchmark redis-cli git make cc; do
    command -v "$c" >/dev/null || { echo "$c is missing (apt-get install redis-tools git make gcc)"; exit 2; }
done
[ -n "${NO_BUILD:-}" ] || cargo build --release -q -p wasque-node --bin wasque-node
BIN=${BIN:-target/release}
TMP=$(mktemp -d)
RUN=${OUT:-benches/runs/replication-$(date +%Y%m%d-%H%M%S).txt}
mkdir -p benches/runs
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT

DISQUE=""
if [ -z "${NO_DISQUE:-}" ]; then
    git clone -q --depth 1 "$DISQUE_SRC" "$TMP/disque-src" 2>/dev/null \
        || git clone -q "$DISQUE_SRC" "$TMP/disque-src"
    make -s -C "$TMP/disque-src" -j"$(nproc)" >"$TMP/disque-build.log" 2>&1 \
        || { echo "Disque did not build:"; tail -20 "$TMP/disque-build.log"; exit 1; }
    DISQUE="$TMP/disque-src/src/disque-server"
fi
printf 'appendonly no\n' > "$TMP/node.conf"
COUNT=0

up() { # up PORT
    for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return; sleep 0.1; done
    echo "nothing answers on port $1"; tail -n 20 "$TMP"/*.log; exit 1
}
start_wasque() { # start_wasque INDEX
    local port=$((BASE + $1))
    COUNT=$((COUNT + 1))
    "$BIN/wasque-node" "$TMP/node.conf" --port "$port" --http-port 0 --data-dir "$TMP/w$COUNT" \
        > "$TMP/w$COUNT.log" 2>&1 &
    PIDS+=($!)
    up "$port"
}
start_disque() { # start_disque INDEX
    local port=$((DBASE + $1))
    COUNT=$((COUNT + 1))
    mkdir -p "$TMP/d$COUNT"
    (cd "$TMP/d$COUNT" && exec "$DISQUE" --port "$port" --bind 127.0.0.1 --appendonly no \
        --cluster-config-file nodes.conf --daemonize no > "$TMP/d$COUNT.log" 2>&1) &
    PIDS+=($!)
    up "$port"
}
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
# form3 KIND BASEPORT: three nodes that all see each other.
form3() {
    local kind=$1 base=$2
    for i in 0 1 2; do "start_$kind" "$i"; done
    redis-cli -p "$base" CLUSTER MEET 127.0.0.1 $((base + 1)) >/dev/null
    redis-cli -p "$base" CLUSTER MEET 127.0.0.1 $((base + 2)) >/dev/null
    for _ in $(seq 300); do
        local ok=0
        for i in 0 1 2; do
            # HELLO lists this node and the others it knows, on both.
            local seen
            seen=$(redis-cli -p $((base + i)) HELLO | grep -c '^127\.0\.0\.1$' || true)
            [ "$seen" -ge 3 ] && ok=$((ok + 1))
        done
        [ "$ok" = 3 ] && break
        sleep 0.1
    done
    # A replicated add must succeed before the clock starts.
    for _ in $(seq 100); do
        redis-cli -p "$base" ADDJOB warm body 5000 REPLICATE 3 2>/dev/null | grep -qv ERR && return
        sleep 0.1
    done
    echo "$kind: three nodes did not form"; exit 1
}
# rb PORT TIMEOUT REPL -> "ops p99" from redis-benchmark's CSV
rb() {
    local out
    out=$(redis-benchmark -p "$1" -c "$CLIENTS" -n "$N" --csv ADDJOB q body "$2" REPLICATE "$3" 2>/dev/null | tail -n 1)
    echo "  port $1 REPLICATE $3: $out" >> "$RUN"
    # "test","rps","avg","min","p50","p95","p99","max"
    echo "$out" | tr -d '"' | awk -F, '{printf "%.0f %s\n", $2, $7}'
}
# pair KIND BASEPORT -> "r1_ops r1_p99 r3_ops r3_p99"
pair() {
    local kind=$1 base=$2 r1 r3
    "start_$kind" 0
    r1=$(rb "$base" 0 1)
    stop_all
    form3 "$kind" "$base"
    r3=$(rb "$base" 5000 3)
    stop_all
    echo "$r1 $r3"
}

echo "# replication $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, N=$N, $CLIENTS clients, $ROUNDS rounds" | tee "$RUN"
echo "# wasque $( [ -n "${NO_BUILD:-}" ] && echo "build \"$(basename "$BIN")\" (NO_BUILD)" || git rev-parse --short HEAD)$( [ -n "$DISQUE" ] && echo ", Disque $(git -C "$TMP/disque-src" rev-parse --short HEAD)")" | tee -a "$RUN"
echo
echo "| round | wasque R1 ops/s | R3 ops/s | R3 p99 ms | R3/R1 | Disque R1 ops/s | R3 ops/s | R3 p99 ms | R3/R1 |"
echo "|---|---|---|---|---|---|---|---|---|"
WR=(); WP=(); DR=(); DP=()
for round in $(seq 1 "$ROUNDS"); do
    echo "## round $round" >> "$RUN"
    read -r w1 _ w3 wp <<<"$(pair wasque "$BASE")"
    wr=$(awk -v a="$w3" -v b="$w1" 'BEGIN {printf "%.2f", a / b}')
    WR+=("$wr"); WP+=("$wp")
    drow="| - | - | - | - |"
    if [ -n "$DISQUE" ]; then
        read -r d1 _ d3 dp <<<"$(pair disque "$DBASE")"
        dr=$(awk -v a="$d3" -v b="$d1" 'BEGIN {printf "%.2f", a / b}')
        DR+=("$dr"); DP+=("$dp")
        drow="| $d1 | $d3 | $dp | ${dr}x |"
    fi
    echo "| $round | $w1 | $w3 | $wp | ${wr}x $drow" | tee -a "$RUN"
done
median() { printf '%s\n' "$@" | sort -g | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}'; }
echo
echo "median: wasque R3/R1 $(median "${WR[@]}")x, R3 p99 $(median "${WP[@]}") ms$( [ -n "$DISQUE" ] && echo "; Disque R3/R1 $(median "${DR[@]}")x, R3 p99 $(median "${DP[@]}") ms")" | tee -a "$RUN"
echo "raw output: $RUN"
