#!/usr/bin/env bash
# Runs wasque's whole test suite: unit tests, and integration tests that
# start real nodes and run the example guests (built on first use for
# wasm32-wasip1, a target this script adds if it is missing).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! rustup target list --installed | grep -qx wasm32-wasip1; then
    rustup target add wasm32-wasip1
fi
exec cargo test --workspace "$@"
