#!/usr/bin/env bash
# The scheduling evaluation on a real cluster (issue 7 §4), beside the
# virtual-time one (`sched_eval`): three wasque-node processes with
# different executor thread counts (2, 1, 1) and node 2 held to a quarter
# of a core by a cgroup (v2 `cpu.max`, else v1 `cpu.cfs_quota_us`; without
# either, node 2 runs unslowed and the script says so). The simulation's
# batch workload as fib jobs (80 % fib(SHORT), 20 % fib(LONG), 70 % on one
# hot queue, 10 % urgent) goes through node 0 under every policy and both
# modes; baseline random + pull. Raw output: benches/runs/sched-<date>.txt.
#
#   bash benches/sched.sh              # JOBS=300 SHORT=29 LONG=37 (about 10 and 400 ms)
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-300}
SHORT=${SHORT:-29}
LONG=${LONG:-37}
BASE=${BASE:-17911}
command -v redis-cli >/dev/null || { echo "redis-cli is missing (apt-get install redis-tools)"; exit 2; }
cargo build --release -q -p wasque-node -p wasque-benches --bin wasque-node --bin sched_load
(cd guest-examples && cargo build --release -q -p fib)
BIN=target/release
FIB=guest-examples/target/wasm32-wasip1/release/fib.wasm
TMP=$(mktemp -d)
RUN=benches/runs/sched-$(date +%Y%m%d-%H%M%S).txt
mkdir -p benches/runs
PIDS=()
CG=""
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "$CG" ] && rmdir "$CG" 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# A cgroup holding node 2 to 25 % of one core.
slow_group() {
    if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -qw cpu /sys/fs/cgroup/cgroup.controllers; then
        CG=/sys/fs/cgroup/wasque-bench-slow
        mkdir -p "$CG" && echo "25000 100000" > "$CG/cpu.max" && return 0
    elif [ -d /sys/fs/cgroup/cpu ]; then
        CG=/sys/fs/cgroup/cpu/wasque-bench-slow
        mkdir -p "$CG" && echo 100000 > "$CG/cpu.cfs_period_us" && echo 25000 > "$CG/cpu.cfs_quota_us" && return 0
    fi
    CG=""
    return 1
}
if slow_group 2>/dev/null; then SLOW="node 2 held to 25 % of a core ($CG)"; else SLOW="no writable cgroup: node 2 NOT slowed"; fi

THREADS=(2 1 1)
start() {
    local i=$1 port=$((BASE + $1))
    "$BIN/wasque-node" --port "$port" --http-port 0 --data-dir "$TMP/$RUNID-n$i" \
        --exec-threads "${THREADS[$i]}" --cluster-node-timeout 3000 > "$TMP/n$i.log" 2>&1 &
    PIDS[$i]=$!
    if [ "$i" = 2 ] && [ -n "$CG" ]; then echo "${PIDS[$i]}" > "$CG/cgroup.procs"; fi
    for _ in $(seq 100); do redis-cli -p "$port" PING >/dev/null 2>&1 && return; sleep 0.1; done
    echo "node $i did not start"; cat "$TMP/n$i.log"; exit 1
}
stop_all() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
reachable() { redis-cli -p "$((BASE + $1))" CLUSTER INFO | tr -d '\r' | sed -n 's/^cluster_reachable_nodes://p'; }

echo "# scheduling on a real cluster $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores; executor threads ${THREADS[*]}; $SLOW" | tee "$RUN"
echo "# $JOBS jobs: fib($SHORT) 80 %, fib($LONG) 20 %, through node 0" | tee -a "$RUN"
echo
echo "| policy | mode | makespan s | jobs/s | wait p50 ms | wait p99 ms | urgent p99 ms | jobs per node (0/1/2) | run s per node |"
echo "|---|---|---|---|---|---|---|---|---|"
RUNID=0
for mode in push pull; do
    for policy in round-robin random least-loaded priority resource; do
        RUNID=$((RUNID + 1))
        start 0; start 1; start 2
        redis-cli -p "$BASE" CLUSTER MEET 127.0.0.1 $((BASE + 1)) >/dev/null
        redis-cli -p "$BASE" CLUSTER MEET 127.0.0.1 $((BASE + 2)) >/dev/null
        for _ in $(seq 200); do
            [ "$(reachable 0)" = 2 ] && [ "$(reachable 1)" = 2 ] && [ "$(reachable 2)" = 2 ] && break
            sleep 0.1
        done
        for q in hot cold1 cold2 cold3 cold4; do
            redis-cli -p "$BASE" QPOLICY "$q" "$policy" MODE "$mode" >/dev/null
        done
        sleep 1.5 # policies reach every node; adverts fill in
        ids=$(for i in 0 1 2; do redis-cli -p $((BASE + i)) HELLO | sed -n 2p; done | paste -sd,)
        row=$("$BIN/sched_load" "127.0.0.1:$BASE" "$TMP/$RUNID-n0" "$FIB" "$JOBS" "$SHORT" "$LONG" "$ids")
        echo "| $policy | $mode $row" | tee -a "$RUN"
        stop_all
    done
done
