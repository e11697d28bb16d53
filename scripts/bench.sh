#!/usr/bin/env bash
# hfmesh's benchmarks, in one run (not part of CI): hashing against this CPU, agent-to-agent
# pulls over QUIC on loopback against raw TCP and a file copy, the agents' peak memory, and
# warm-pull latency. Prints a markdown table; writes bench.md and bench.json to the output dir.
#
#   bash scripts/bench.sh [OUT_DIR]          # default: $CARGO_TARGET_DIR/bench or target/bench
#
# Settings (environment): HFMESH_BENCH_SIZE (model bytes, default 2 GiB + 4 MiB + 7),
# HFMESH_BENCH_REPEAT (default 3), HFMESH_BENCH_WARM_RUNS (default 20), HFMESH_BENCH_WORK
# (scratch dir, default OUT_DIR/work; needs about 3 × the model size free),
# HFMESH_BENCH_PULLS_ONLY=1 runs only the transfer baselines and the agent-to-agent pulls (A/B),
# HFMESH_BENCH_STRESS=1 also runs the ignored stress_* tests (chunk-size study),
# HFMESH_BENCH_KEEP_SYSCTL=1 keeps the host's UDP buffer limits (see below).
set -euo pipefail
cd "$(dirname "$0")/.."

out="${1:-${HFMESH_BENCH_OUT:-${CARGO_TARGET_DIR:-$PWD/target}/bench}}"
mkdir -p "$out"
export HFMESH_BENCH_OUT="$(cd "$out" && pwd)"
export HFMESH_BENCH_WORK="${HFMESH_BENCH_WORK:-$HFMESH_BENCH_OUT/work}"

echo "bench: $(nproc) cores,$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2), load $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# hfmesh asks for 16 MiB UDP socket buffers; the kernel caps them at net.core.rmem_max/wmem_max
# (often 208 KiB or 4 MiB). deploy/systemd/99-hfmesh-sysctl.conf sets 32 MiB for operators. As
# root, the bench raises both to that for the run (and puts them back after), and says so;
# HFMESH_BENCH_KEEP_SYSCTL=1 leaves the host's values alone.
want=33554432
rmem="$(sysctl -n net.core.rmem_max 2>/dev/null || echo 0)"
wmem="$(sysctl -n net.core.wmem_max 2>/dev/null || echo 0)"
if [ "${HFMESH_BENCH_KEEP_SYSCTL:-0}" != 1 ] && [ "$(id -u)" = 0 ] \
    && { [ "$rmem" -lt "$want" ] || [ "$wmem" -lt "$want" ]; }; then
    echo "bench: raising net.core.rmem_max/wmem_max from $rmem/$wmem to $want for this run (root)" >&2
    sysctl -q -w net.core.rmem_max="$want" net.core.wmem_max="$want"
    trap 'sysctl -q -w net.core.rmem_max="$rmem" net.core.wmem_max="$wmem"; echo "bench: net.core.rmem_max/wmem_max back to $rmem/$wmem" >&2' EXIT
else
    echo "bench: net.core.rmem_max/wmem_max are $rmem/$wmem (unchanged)" >&2
fi
cargo bench --locked --bench mesh

if [ "${HFMESH_BENCH_STRESS:-0}" = 1 ]; then
    cargo test --release --locked --test stress_chunk_size -- --ignored --nocapture --test-threads 1
fi
