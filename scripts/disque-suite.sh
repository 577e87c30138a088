#!/usr/bin/env bash
# Runs Disque's own cluster test suite (tests/cluster in Disque's source)
# against wasque-node, unmodified: the suite starts `src/disque-server`,
# which here is scripts/disque-drop-in/disque-server running wasque-node.
# Nothing is fetched: give it a Disque source checkout.
#
#   scripts/disque-suite.sh DISQUE_SOURCE_DIR [suite options...]
#   DISQUE_SRC=... scripts/disque-suite.sh [suite options...]
#
# Without options each unit of tests/cluster/tests runs on its own (see
# below) and a summary names the units with failures. Options are passed
# to one run of run.tcl: --single PATTERN (one unit, e.g. --single
# 01-faildet), --timeout SEC, --pause-on-error.
# WASQUE_NODE=/path/to/wasque-node skips the build; otherwise wasque-node
# is built with the release profile (WASQUE_PROFILE=dev for a debug build).
# The suite's copy lives in a temp dir, removed at the end
# (KEEP_SUITE_DIR=1 keeps it, with the nodes' logs).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)

src=${DISQUE_SRC:-}
if [[ $# -gt 0 && $1 != --* ]]; then
    src=$1
    shift
fi
if [[ -z $src || ! -f $src/tests/cluster/run.tcl ]]; then
    echo "usage: $0 DISQUE_SOURCE_DIR [run.tcl options]  (or DISQUE_SRC=...)" >&2
    echo "  DISQUE_SOURCE_DIR must hold Disque's tests/cluster/run.tcl" >&2
    exit 2
fi
command -v tclsh >/dev/null || {
    echo "tclsh not found: install Tcl (e.g. apt-get install tcl)" >&2
    exit 2
}

if [[ -z ${WASQUE_NODE:-} ]]; then
    profile=${WASQUE_PROFILE:-release}
    (cd "$repo" && cargo build --profile "$profile" -p wasque-node --bin wasque-node)
    dir=$profile
    [[ $profile == dev ]] && dir=debug
    WASQUE_NODE="${CARGO_TARGET_DIR:-$repo/target}/$dir/wasque-node"
fi
[[ $WASQUE_NODE == /* ]] || WASQUE_NODE="$PWD/$WASQUE_NODE"
[[ -x $WASQUE_NODE ]] || {
    echo "no wasque-node at $WASQUE_NODE" >&2
    exit 2
}
export WASQUE_NODE

# The suite runs ../../../src/disque-server from tests/cluster/tmp: a copy
# of its tests/ beside a src/ holding the wrapper.
work=$(mktemp -d "${TMPDIR:-/tmp}/disque-suite.XXXXXX")
if [[ -z ${KEEP_SUITE_DIR:-} ]]; then
    trap 'rm -rf "$work"' EXIT
else
    echo "suite copy kept in $work"
fi
cp -r "$src/tests" "$work/tests"
mkdir -p "$work/src" "$work/tests/cluster/tmp"
cp "$repo/scripts/disque-drop-in/disque-server" "$work/src/disque-server"
chmod +x "$work/src/disque-server"
cd "$work"
# With --single (or any run.tcl option) the suite runs once, as asked.
# Otherwise each unit runs in a run of its own (fresh nodes each time):
# run.tcl stops every later unit when a test errors outside an assertion,
# and a failed assertion inside one of its loops (the `D-` id prefix
# checks of 02-jobs-replication) makes the next turn of the loop error.
if [[ $# -gt 0 ]]; then
    exec tclsh tests/cluster/run.tcl "$@"
fi
failed=()
for unit in tests/cluster/tests/*.tcl; do
    name=$(basename "$unit" .tcl)
    log="$work/$name.log"
    echo "== $name"
    if ! tclsh tests/cluster/run.tcl --single "$name" 2>&1 | tee "$log"; then
        failed+=("$name (stopped)")
    elif grep -q "Jumping to next unit" "$log"; then
        failed+=("$name")
    fi
done
if [[ ${#failed[@]} -gt 0 ]]; then
    echo "== units with a failed test: ${failed[*]}"
    exit 1
fi
echo "== every unit passed"
