# Sourced by the RESP benchmark scripts (resp.sh, resp_rounds.sh,
# scale.sh), which start a wasque node and a redis-server side by side:
# a temp dir ($TMP), an exit trap that stops the servers they started
# (by their own pids, $WPID and $RPID) and removes it, and wait_port.

TMP=$(mktemp -d)
cleanup() {
    [ -n "${WPID:-}" ] && kill "$WPID" 2>/dev/null || true
    [ -n "${RPID:-}" ] && kill "$RPID" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$TMP"
}
trap cleanup EXIT

# Waits (10 s at most) until something answers PING on 127.0.0.1:$1.
wait_port() {
    for _ in $(seq 100); do redis-cli -p "$1" PING >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "nothing answers on port $1"
    return 1
}
