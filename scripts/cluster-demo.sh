#!/usr/bin/env bash
# A local cluster, end to end: starts three nodes, meets them, submits Wasm
# jobs to one, kills another with SIGKILL mid-run, and shows every job
# finish (the dead node's share runs elsewhere once it is declared down).
#
#   WASQUE_DEMO_PORT=17721 bash scripts/cluster-demo.sh   # ports 7721..7723 by default
set -euo pipefail
cd "$(dirname "$0")/.."
base=${WASQUE_DEMO_PORT:-7721}
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1
fi
echo "== building wasque (release) and the example guests"
cargo build --release --quiet -p wasque-node -p wasque-sdk
(cd guest-examples && cargo build --release --quiet)
guests=guest-examples/target/wasm32-wasip1/release
data=target/cluster-demo
rm -rf "$data"
mkdir -p "$data"

pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
for i in 0 1 2; do
    port=$((base + i))
    echo "== node $i: wasque-node --port $port --data-dir $data/n$i --cluster-node-timeout 2000 --http-port 0"
    target/release/wasque-node --port "$port" --data-dir "$data/n$i" --cluster-node-timeout 2000 \
        --http-port 0 >"$data/n$i.log" 2>&1 &
    pids+=($!)
done
on() { local i=$1; shift; target/release/wasque --node "127.0.0.1:$((base + i))" --data-dir "$data/n$i" "$@"; }
for i in 0 1 2; do
    for _ in $(seq 1 100); do
        on "$i" info >/dev/null 2>&1 && break
        sleep 0.1
    done
done

step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }
step "meet: node 0 introduces itself to nodes 1 and 2" "wasque --node 127.0.0.1:$base cluster meet 127.0.0.1:$((base + 1)); ... $((base + 2))"
on 0 cluster meet "127.0.0.1:$((base + 1))"
on 0 cluster meet "127.0.0.1:$((base + 2))"
reachable() { on "$1" cluster info | sed -n 's/^cluster_reachable_nodes://p' | head -n 1; }
for _ in $(seq 1 100); do
    [ "$(reachable 2)" = 2 ] && break
    sleep 0.1
done
on 0 cluster info

payloads=$data/payloads.txt
for i in $(seq 1 3000); do echo "$((27 + i % 4))"; done >"$payloads"
step "3,000 fib jobs submitted to node 0 (each kept on 3 nodes until acked)" \
    "wasque --node 127.0.0.1:$base --pick first run $guests/fib.wasm --payloads $payloads --out $data/out"
on 0 --pick first run "$guests/fib.wasm" --payloads "$payloads" --out "$data/out" --no-progress &
run=$!
sleep 2
echo
echo "== node 2 ran $(on 2 info | sed -n 's/^jobs_run://p') jobs so far; kill -9 node 2 mid-run (pid ${pids[2]})"
kill -9 "${pids[2]}"
wait "${pids[2]}" 2>/dev/null || true
wait "$run"
for _ in $(seq 1 100); do
    [ "$(reachable 0)" = 1 ] && break
    sleep 0.1
done
echo
step "what the survivors see (node 2 down)" "wasque --node 127.0.0.1:$base cluster info"
on 0 cluster info
done_count=$(find "$data/out" -name '*.out' | wc -l)
failed_count=$(find "$data/out" -name '*.err' | wc -l)
echo
echo "== $done_count results, $failed_count failures; jobs run by the survivors:"
for i in 0 1; do echo "node $i: $(on "$i" info | sed -n 's/^jobs_run://p')"; done
echo "== done: the nodes stop now (their data stays in $data)"
