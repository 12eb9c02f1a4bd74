#!/bin/sh
# Published ports: direct vs nftables DNAT vs userland proxy vs the relay a container
# reaching its own published port goes through, in one run (root).
# Traffic: 127.0.0.1 and a namespace the program makes; all of it is removed at the end.
# BENCH_MIB (default 512) bytes per bulk transfer, BENCH_CONNS (default 2000) connects.
set -eu
cd "$(dirname "$0")/.."
CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 \
    cargo run --quiet --release -p berth-net --example publish_bench
