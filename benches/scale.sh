#!/usr/bin/env bash
# Scale curve (issue 23): how a node's add-get-ack cycle and its memory
# hold up as the jobs queued on it grow from 10 thousand to 10 million,
# with a redis-server holding the same backlog as a list as the baseline
# in the same run. Both run with their durable defaults (the node with its
# defaults, `appendonly yes`, `appendfsync everysec`; redis with
# `appendonly yes`, `appendfsync everysec`, no snapshots). The node's
# `max-jobs` (10 million by default) is raised to 20 million so the probe
# fits above the backlog.
#
#   benches/scale.sh                       # 10k, 100k, 1M, 10M
#   LEVELS="10000 100000" benches/scale.sh # a quick look
#
# At each level both are filled up to it (distinct random 100-byte bodies
# on queue `backlog`, pipelined), their RSS is read, then 50 clients loop
# ADDJOB -> GETJOB -> ACKJOB (LPUSH -> RPOP -> DEL) for 10 s on another
# queue. Raw output: benches/runs/scale-jobs-<stamp>.txt; the plot:
# benches/plots/scale-jobs.png (`scale_plot`). Needs about 6 GiB of RAM
# and 5 GiB of disk for 10 million; redis-server from Debian's package.
set -euo pipefail
cd "$(dirname "$0")/.."
LEVELS=${LEVELS:-"10000 100000 1000000 10000000"}
SECS=${SECS:-10}
command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)"; exit 2; }
cargo build --release -q -p wasque-node -p wasque-benches --bin wasque-node --bin resp_load --bin scale_plot
BIN=target/release
WPORT=${WPORT:-17712}
RPORT=${RPORT:-17380}
. benches/servers.sh
printf 'max-jobs 20000000\n' > "$TMP/wasque.conf"
"$BIN/wasque-node" "$TMP/wasque.conf" --port "$WPORT" --http-port 0 --data-dir "$TMP/data" > "$TMP/wasque.out" 2>&1 &
WPID=$!
redis-server --port "$RPORT" --bind 127.0.0.1 --save '' --appendonly yes --appendfsync everysec \
    --daemonize no --dir "$TMP" > "$TMP/redis.out" 2>&1 &
RPID=$!
for port in "$WPORT" "$RPORT"; do
    wait_port "$port" || { cat "$TMP"/*.out; exit 1; }
done
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
OUT="benches/runs/scale-jobs-$(date +%Y%m%d-%H%M%S).txt"
mkdir -p benches/runs benches/plots
W0=$(rss_kb "$WPID"); R0=$(rss_kb "$RPID")
{
echo "# machine: $(nproc) cores, $(awk '/MemTotal/ {print $2/1024/1024 " GiB"}' /proc/meminfo), $(redis-server --version | cut -d' ' -f3)"
echo "# empty: wasque rss_kb=$W0 redis rss_kb=$R0"
have=0
for level in $LEVELS; do
    add=$((level - have))
    echo "## level $level"
    echo "wasque fill $("$BIN/resp_load" fill "127.0.0.1:$WPORT" disque "$add" 100 backlog)"
    echo "redis fill $("$BIN/resp_load" fill "127.0.0.1:$RPORT" redis "$add" 100 backlog)"
    have=$level
    sleep 2
    W=$(rss_kb "$WPID"); R=$(rss_kb "$RPID")
    echo "level=$level wasque rss_kb=$W bytes_per_job=$(( (W - W0) * 1024 / level )) $("$BIN/resp_load" cycle "127.0.0.1:$WPORT" disque 50 "$SECS" probe)"
    echo "level=$level redis rss_kb=$R bytes_per_job=$(( (R - R0) * 1024 / level )) $("$BIN/resp_load" cycle "127.0.0.1:$RPORT" redis 50 "$SECS" probe)"
done
} | tee "$OUT"
"$BIN/scale_plot" "$OUT" benches/plots/scale-jobs.png
