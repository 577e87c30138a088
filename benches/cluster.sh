#!/usr/bin/env bash
# Cluster benchmarks (issue 6 §5), in one run, each beside its baseline:
#   1. ADDJOB REPLICATE 3 on three nodes (sync and ASYNC), 50 clients and 1
#      client, against REPLICATE 1 on one node, same redis-benchmark flags;
#   2. a full ADDJOB -> GETJOB -> ACKJOB cycle, 4 workers, three nodes
#      (default replication: 3 copies) against one node;
#   3. Wasm jobs: 10,000 fib jobs submitted to one node, run on 3 nodes
#      against 1, and how they spread;
#   4. time to notice a killed node, and for its delivered, unacked job to
#      be delivered again elsewhere, against cluster-node-timeout and RETRY.
# Needs redis-benchmark and redis-cli (Debian: redis-tools). All nodes run on
# this machine's cores, with `appendonly no`. Raw output goes to
# benches/runs/cluster-<date>.txt.
#
#   bash benches/cluster.sh            # N=200000 adds per ADDJOB run
#   N=50000 bash benches/cluster.sh
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-200000}
JOBS=${JOBS:-10000}
BASE=${BASE:-17811}
TIMEOUT_MS=${TIMEOUT_MS:-2000}
for c in redis-benchmark redis-cli; do
    command -v "$c" >/dev/null || { echo "$c is missing (apt-get install redis-tools)"; exit 2; }
done
cargo build --release -q -p wasque-node -p wasque-sdk -p wasque-benches --bin wasque-node --bin wasque --bin resp_load
(cd guest-examples && cargo build --release -q -p fib)
BIN=target/release
FIB=guest-examples/target/wasm32-wasip1/release/fib.wasm
TMP=$(mktemp -d)
RUN=benches/runs/cluster-$(date +%Y%m%d-%H%M%S).txt
mkdir -p benches/runs
PIDS=()
PHASE=0
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
printf 'appendonly no\n' > "$TMP/node.conf"

start() { # start INDEX -> pid in PIDS[INDEX]
    local i=$1 port=$((BASE + $1))
    "$BIN/wasque-node" "$TMP/node.conf" --port "$port" --http-port 0 --data-dir "$TMP/p$PHASE-n$i" \
        --cluster-node-timeout "$TIMEOUT_MS" > "$TMP/n$i.log" 2>&1 &
    PIDS[$i]=$!
    for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && return; sleep 0.1; done
    echo "node $i did not start"; cat "$TMP/n$i.log"; exit 1
}
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
    PHASE=$((PHASE + 1))
}
reachable() { redis-cli -p "$((BASE + $1))" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_reachable_nodes://p'; }
form3() {
    start 0; start 1; start 2
    redis-cli -p "$BASE" CLUSTER MEET 127.0.0.1 $((BASE + 1)) >/dev/null
    redis-cli -p "$BASE" CLUSTER MEET 127.0.0.1 $((BASE + 2)) >/dev/null
    for _ in $(seq 200); do
        [ "$(reachable 0)" = 2 ] && [ "$(reachable 1)" = 2 ] && [ "$(reachable 2)" = 2 ] && return
        sleep 0.1
    done
    echo "cluster did not form"; exit 1
}
# rb LABEL CLIENTS N ARGS... -> one table row from redis-benchmark's CSV
rb() {
    local label=$1 c=$2 n=$3; shift 3
    local out
    out=$(redis-benchmark -p "$BASE" -c "$c" -n "$n" --csv "$@" 2>/dev/null | tail -n 1)
    echo "$label c=$c: $out" >> "$RUN"
    # "test","rps","avg","min","p50","p95","p99","max"
    echo "$out" | tr -d '"' | awk -F, -v l="$label" -v c="$c" '{printf "| %s | %s | %.0f | %s | %s |\n", l, c, $2, $5, $7}'
}

echo "# cluster benchmarks $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, N=$N" | tee "$RUN"
echo
echo "## ADDJOB (redis-benchmark, pipeline 1)"
echo
echo "| setup | clients | ops/s | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
start 0
rb "1 node, REPLICATE 1 (baseline)" 50 "$N" ADDJOB q body 0 REPLICATE 1
rb "1 node, REPLICATE 1 (baseline)" 1 $((N / 10)) ADDJOB q body 0 REPLICATE 1
stop_all
form3
rb "3 nodes, REPLICATE 3" 50 "$N" ADDJOB q body 5000 REPLICATE 3
rb "3 nodes, REPLICATE 3 ASYNC" 50 "$N" ADDJOB q body 5000 REPLICATE 3 ASYNC
rb "3 nodes, REPLICATE 3" 1 $((N / 10)) ADDJOB q body 5000 REPLICATE 3
stop_all

echo
echo "## full cycle ADDJOB -> GETJOB -> ACKJOB, 4 workers, 10 s"
echo
echo "| setup | cycles/s | p50 | p99 |"
echo "|---|---|---|---|"
cyc() {
    local label=$1 out
    out=$("$BIN/resp_load" cycle "127.0.0.1:$BASE" disque 4 10 cq 2>&1 | tail -n 1)
    echo "$label: $out" >> "$RUN"
    echo "| $label | $out |"
}
start 0
cyc "1 node"
stop_all
form3
cyc "3 nodes (3 copies a job)"
stop_all

echo
echo "## Wasm jobs: $JOBS fib(24..27) jobs submitted to node 0 (wasque run, 64 in flight)"
echo
echo "| setup | jobs/s | p50 | p99 | jobs run per node |"
echo "|---|---|---|---|---|"
for i in $(seq 1 "$JOBS"); do echo "$((24 + i % 4))"; done > "$TMP/payloads"
wasm_run() {
    local label=$1 nodes=$2 summary per
    summary=$("$BIN/wasque" --node "127.0.0.1:$BASE" --pick first --data-dir "$TMP/p$PHASE-n0" run "$FIB" \
        --payloads "$TMP/payloads" --out "$TMP/out-$nodes" --no-progress 2>&1 | tail -n 1)
    echo "$label: $summary" >> "$RUN"
    per=""
    for i in $(seq 0 $((nodes - 1))); do
        per="$per $(redis-cli -p $((BASE + i)) INFO executor | tr -d '\r' | sed -n 's/^jobs_run://p')"
    done
    local rate p50 p99
    rate=$(echo "$summary" | sed -n 's/.*(\([0-9]*\) jobs\/s).*/\1/p')
    p50=$(echo "$summary" | sed -n 's/.*p50 \([0-9.]* ms\).*/\1/p')
    p99=$(echo "$summary" | sed -n 's/.*p99 \([0-9.]* ms\).*/\1/p')
    echo "| $label | $rate | $p50 | $p99 |$per |"
}
start 0
wasm_run "1 node" 1
stop_all
form3
wasm_run "3 nodes (3 copies a job)" 3
stop_all

echo
echo "## a node killed with SIGKILL (cluster-node-timeout $TIMEOUT_MS ms, RETRY 60 s)"
echo
form3
id=$(redis-cli -p $((BASE + 2)) ADDJOB kq work 5000 REPLICATE 3 RETRY 60)
redis-cli -p $((BASE + 2)) GETJOB NOHANG FROM kq >/dev/null
t0=$(date +%s%N)
kill -9 "${PIDS[2]}"
wait "${PIDS[2]}" 2>/dev/null || true
noticed=""
for _ in $(seq 1000); do
    if [ "$(reachable 0)" = 1 ]; then noticed=$(( ($(date +%s%N) - t0) / 1000000 )); break; fi
    sleep 0.01
done
got=$(redis-cli -p "$BASE" GETJOB TIMEOUT 60000 FROM kq | sed -n 2p)
again=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "kill: noticed after ${noticed} ms, job $id delivered again ($got) after ${again} ms" >> "$RUN"
echo "| measure | ms |"
echo "|---|---|"
echo "| dead node noticed by a survivor | ${noticed} |"
echo "| its delivered, unacked job delivered again by a holder | ${again} |"
echo "| cluster-node-timeout | $TIMEOUT_MS |"
echo "| RETRY of the job | 60000 |"
echo
echo "raw output: $RUN"
