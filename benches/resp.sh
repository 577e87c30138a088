#!/usr/bin/env bash
# RESP / Disque semantics benchmarks (issue 4): a wasque node and, as the
# baseline in the same run, a redis-server, driven with identical client
# flags. Needs redis-server and redis-benchmark (Debian: redis-server,
# redis-tools). Prints a Markdown table; raw output goes to
# benches/runs/resp-<date>.txt.
#
#   benches/resp.sh            # full run (1,000,000 queued jobs)
#   JOBS=100000 benches/resp.sh
#   IO_THREADS=2 benches/resp.sh   # the node's default on 2 cores (one per core)
#
# The node runs with `io-threads 1` unless IO_THREADS says otherwise: like
# redis-server, one thread for its sockets (on 2 cores, one of which
# redis-benchmark takes, a second runtime thread only adds hand-offs).
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS=${JOBS:-1000000}
N=${N:-200000}
for c in redis-server redis-benchmark; do
    command -v "$c" >/dev/null || { echo "$c is missing (apt-get install redis-server redis-tools)"; exit 2; }
done
cargo build --release -q -p wasque-node -p wasque-benches --bin wasque-node --bin resp_load
BIN=target/release
WPORT=${WPORT:-17711}
RPORT=${RPORT:-17379}
. benches/servers.sh
printf 'appendonly no\nio-threads %s\n' "${IO_THREADS:-1}" > "$TMP/wasque.conf"
start_wasque() {
    "$BIN/wasque-node" "$TMP/wasque.conf" --port "$WPORT" --http-port 0 --data-dir "$TMP/data" \
        --enable-debug-command > "$TMP/wasque.out" 2>&1 &
    WPID=$!
    wait_port "$WPORT" >/dev/null || { echo "wasque-node did not start"; cat "$TMP/wasque.out"; exit 1; }
}
start_redis() {
    redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly no --daemonize no \
        --dir "$TMP" > "$TMP/redis.out" 2>&1 &
    RPID=$!
    wait_port "$RPORT" >/dev/null || { echo "redis-server did not start"; exit 1; }
}
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
BODY=$(head -c 75 /dev/urandom | base64 -w0 | head -c 100)
OUT="benches/runs/resp-$(date +%Y%m%d-%H%M%S).txt"
mkdir -p benches/runs
start_wasque
start_redis
{
echo "# wasque io-threads ${IO_THREADS:-1}"
echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {print $2/1024/1024 " GiB"}' /proc/meminfo), $(redis-server --version | cut -d' ' -f3)"
for P in 1 16; do
    echo "## ADDJOB vs LPUSH, c50 P$P n$N"
    redis-benchmark -p "$WPORT" -c 50 -n "$N" -P "$P" --csv ADDJOB bench "$BODY" 0 | tail -1 | sed 's/^/wasque,/'
    redis-benchmark -p "$RPORT" -c 50 -n "$N" -P "$P" --csv LPUSH bench "$BODY" | tail -1 | sed 's/^/redis,/'
    redis-cli -p "$WPORT" DEBUG FLUSHALL >/dev/null
    redis-cli -p "$RPORT" FLUSHALL >/dev/null
done
echo "## cycle, 4 workers, 10 s"
echo "wasque $("$BIN/resp_load" cycle 127.0.0.1:$WPORT disque 4 10 cyc)"
echo "redis $("$BIN/resp_load" cycle 127.0.0.1:$RPORT redis 4 10 cyc)"
echo "## memory, $JOBS queued jobs of 100 random bytes"
W0=$(rss_kb "$WPID"); R0=$(rss_kb "$RPID")
"$BIN/resp_load" fill 127.0.0.1:$WPORT disque "$JOBS" 100 big | sed 's/^/wasque /'
"$BIN/resp_load" fill 127.0.0.1:$RPORT redis "$JOBS" 100 big | sed 's/^/redis /'
sleep 1
W1=$(rss_kb "$WPID"); R1=$(rss_kb "$RPID")
echo "wasque rss_kb_before=$W0 rss_kb_after=$W1 bytes_per_job=$(( (W1 - W0) * 1024 / JOBS ))"
echo "redis rss_kb_before=$R0 rss_kb_after=$R1 bytes_per_job=$(( (R1 - R0) * 1024 / JOBS ))"
echo "## cycle on another queue while '$JOBS'-job queue is full, 4 workers, 10 s"
echo "wasque $("$BIN/resp_load" cycle 127.0.0.1:$WPORT disque 4 10 other)"
echo "redis $("$BIN/resp_load" cycle 127.0.0.1:$RPORT redis 4 10 other)"
} | tee "$OUT"
