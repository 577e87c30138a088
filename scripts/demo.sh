#!/usr/bin/env bash
# The main job: builds wasque and the example guests, starts a local node
# with default settings (no config file), runs example Wasm jobs end to end
# through the `wasque` CLI, then stops the node.
#
#   WASQUE_DEMO_PORT=17711 bash scripts/demo.sh   # if 7711 is taken
set -euo pipefail
cd "$(dirname "$0")/.."
port=${WASQUE_DEMO_PORT:-7711}
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1
fi
echo "== building wasque (release) and the example guests"
cargo build --release --quiet -p wasque-node -p wasque-sdk
(cd guest-examples && cargo build --release --quiet)
guests=guest-examples/target/wasm32-wasip1/release
data=target/demo-data
rm -rf "$data"

echo "== starting a node: wasque-node --port $port --data-dir $data"
target/release/wasque-node --port "$port" --data-dir "$data" &
node=$!
trap 'kill "$node" 2>/dev/null; wait "$node" 2>/dev/null || true' EXIT
wasque() { target/release/wasque --node "127.0.0.1:$port" --data-dir "$data" "$@"; }
for _ in $(seq 1 100); do
    wasque info >/dev/null 2>&1 && break
    kill -0 "$node" 2>/dev/null || { echo "the node did not start" >&2; exit 1; }
    sleep 0.1
done

step() { printf '\n== %s\n$ %s\n' "$1" "$2"; }

step "upload a module (prints its sha256)" "wasque module put $guests/wordcount.wasm"
wasque module put "$guests/wordcount.wasm"

payloads=target/demo-payloads.txt
for i in $(seq 1 5000); do echo "job $i counts the words of this line, $i of them"; done >"$payloads"
step "count words over 5,000 payloads, 64 in flight" "wasque run $guests/wordcount.wasm --payloads $payloads --out target/demo-out"
wasque run "$guests/wordcount.wasm" --payloads "$payloads" --out target/demo-out
echo "first result: $(cat target/demo-out/000001.out)"

step "one job, waited for: sha256 of a payload" "echo -n hello | wasque addjob demo 5000 --module $guests/sha256.wasm --wait"
echo -n hello | wasque addjob demo 5000 --module "$guests/sha256.wasm" --wait

step "a CPU-heavy job: fib(27)" "wasque addjob demo 27 5000 --module $guests/fib.wasm --wait"
wasque addjob demo 27 5000 --module "$guests/fib.wasm" --wait

step "a JSON transform" "wasque addjob demo '{\"b\":\"hi\",\"a\":21}' 5000 --module $guests/json.wasm --wait"
wasque addjob demo '{"b":"hi","a":21}' 5000 --module "$guests/json.wasm" --wait
echo

step "an asynchronous job, inspected later as JSON" "wasque addjob demo 'some words here' 5000 --module $guests/wordcount.wasm; wasque show ID --json"
id=$(wasque addjob demo 'some words here' 5000 --module "$guests/wordcount.wasm")
wasque wait "$id" >/dev/null
wasque show "$id" --json
wasque ackjob "$id" >/dev/null

step "a hostile job that never stops is ended by its fuel budget" "wasque addjob demo x 5000 --module $guests/spin.wasm --fuel 50000000 --wait"
wasque addjob demo x 5000 --module "$guests/spin.wasm" --fuel 50000000 --wait || echo "(exit code $?)"

step "... or by its wall-clock deadline" "wasque addjob demo x 5000 --module $guests/spin.wasm --fuel 100000000000 --deadline 200 --wait"
wasque addjob demo x 5000 --module "$guests/spin.wasm" --fuel 100000000000 --deadline 200 --wait || echo "(exit code $?)"

step "a job that allocates without end hits its memory cap" "wasque addjob demo x 5000 --module $guests/hog.wasm --memory 16777216 --wait"
wasque addjob demo x 5000 --module "$guests/hog.wasm" --memory 16777216 --wait || echo "(exit code $?)"

step "a job that tries to escape the sandbox sees only errors" "wasque addjob demo x 5000 --module $guests/escape.wasm --wait"
wasque addjob demo x 5000 --module "$guests/escape.wasm" --wait

step "the node's counters" "wasque info"
wasque info
echo
echo "== done: the node stops now (its data stays in $data)"
