#!/usr/bin/env bash
# Runs Disque's own cluster test suite (tests/cluster in Disque's source)
# against wasque-node, unmodified: the suite starts `src/disque-server`,
# which here is scripts/disque-drop-in/disque-server running wasque-node.
# Nothing is fetched: give it a Disque source checkout.
#
#   scripts/disque-suite.sh DISQUE_SOURCE_DIR [suite options...]
#   DISQUE_SRC=... scripts/disque-suite.sh [suite options...]
#
# Suite options are run.tcl's: --single PATTERN (one unit, e.g.
# --single 01-faildet), --timeout SEC, --pause-on-error.
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
tclsh tests/cluster/run.tcl "$@"
