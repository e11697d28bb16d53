#!/usr/bin/env bash
# A/B of the agent-to-agent pull (seed's blob cached, into the verified tree) between two builds,
# interleaved round by round so that the machine's drift falls on both alike: on this VM two
# whole benchmark runs of one build differ by 10% or more, more than most changes. Not part of CI.
#
#   bash scripts/bench-ab.sh f13f35a HEAD 6      # REV_A REV_B [ROUNDS, default 3]
#
# Each round runs `HFMESH_BENCH_PULLS_ONLY=1 HFMESH_BENCH_REPEAT=3` of this checkout's benchmark
# harness once with each build's `hfmesh` (both must take the harness's agent flags). Prints every
# pull and each build's median; reports stay in the printed folder.
set -euo pipefail
cd "$(dirname "$0")/.."

a="${1:?usage: bench-ab.sh REV_A REV_B [ROUNDS]}"
b="${2:?usage: bench-ab.sh REV_A REV_B [ROUNDS]}"
rounds="${3:-3}"
case "$rounds" in '' | *[!0-9]* | 0) echo "bench-ab.sh: ROUNDS must be a whole number from 1" >&2; exit 2 ;; esac
[ "$rounds" -le 20 ] || { echo "bench-ab.sh: at most 20 rounds" >&2; exit 2; }
git rev-parse --verify --quiet "$a^{commit}" >/dev/null || { echo "bench-ab.sh: no commit $a" >&2; exit 2; }
git rev-parse --verify --quiet "$b^{commit}" >/dev/null || { echo "bench-ab.sh: no commit $b" >&2; exit 2; }

root="$PWD"
target="${CARGO_TARGET_DIR:-$root/target}"
work="$(mktemp -d /tmp/hfmesh-ab.XXXXXX)"
rmem="$(sysctl -n net.core.rmem_max 2>/dev/null || echo 0)"
wmem="$(sysctl -n net.core.wmem_max 2>/dev/null || echo 0)"
cleanup() {
    for label in A B; do
        if [ -d "$work/src-$label" ]; then
            git -C "$root" worktree remove --force "$work/src-$label" || true
        fi
    done
    # The harness runs whatever is at target/release/hfmesh: put this checkout's build back.
    if [ -f "$work/hfmesh-here" ]; then
        cp "$work/hfmesh-here" "$target/release/hfmesh" || true
    fi
    if [ "$(id -u)" = 0 ] && [ "$rmem" != 0 ]; then
        sysctl -q -w net.core.rmem_max="$rmem" net.core.wmem_max="$wmem" || true
    fi
}
trap cleanup EXIT

# The harness of this checkout; it runs `$target/release/hfmesh`.
bench="$(cargo bench --locked --bench mesh --no-run --message-format=json 2>/dev/null \
    | python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "mesh":
        print(m["executable"])')"
cp "$target/release/hfmesh" "$work/hfmesh-here"

# Each build in a worktree of its own, sharing the target folder (dependencies built once). The
# crate is touched first: cargo re-links target/release/hfmesh only when it compiles, so a build
# it found fresh could leave the other revision's binary there.
for pair in "A:$a" "B:$b"; do
    label="${pair%%:*}"; rev="${pair#*:}"
    git worktree add --quiet --detach "$work/src-$label" "$rev"
    touch "$work/src-$label/src/main.rs"
    echo "bench-ab.sh: building $label = $rev ($(git rev-parse --short "$rev"))" >&2
    (cd "$work/src-$label" && CARGO_TARGET_DIR="$target" cargo build --release --locked --quiet --bin hfmesh)
    cp "$target/release/hfmesh" "$work/hfmesh-$label"
done
cmp -s "$work/hfmesh-A" "$work/hfmesh-B" && echo "bench-ab.sh: note: A and B built the same binary" >&2

if [ "$(id -u)" = 0 ]; then
    sysctl -q -w net.core.rmem_max=33554432 net.core.wmem_max=33554432 # as scripts/bench.sh
fi
for round in $(seq 1 "$rounds"); do
    for label in A B; do
        cp "$work/hfmesh-$label" "$target/release/hfmesh"
        out="$work/round-$round-$label"
        mkdir -p "$out"
        echo "bench-ab.sh: round $round of $rounds, $label" >&2
        HFMESH_BENCH_PULLS_ONLY=1 HFMESH_BENCH_REPEAT=3 HFMESH_BENCH_OUT="$out" \
            HFMESH_BENCH_WORK="$out/work" "$bench" --bench >"$out/log" 2>&1 \
            || echo "bench-ab.sh: round $round $label failed (see $out/log)" >&2
    done
done

python3 - "$work" "$rounds" "$a" "$b" <<'PY'
import pathlib, re, statistics, sys

work, rounds, revs = pathlib.Path(sys.argv[1]), int(sys.argv[2]), {"A": sys.argv[3], "B": sys.argv[4]}
row = re.compile(r"seed's blob in the page cache: .*?pull best of \d+ \(([\d, ]+)\)")
pulls = {"A": [], "B": []}
print("| round | A pulls, MB/s | B pulls, MB/s |\n|---|---|---|")
for r in range(1, rounds + 1):
    cells = []
    for label in "AB":
        log = work / f"round-{r}-{label}" / "log"
        m = row.search(log.read_text()) if log.exists() else None
        got = [float(x) for x in m.group(1).split(",")] if m else []
        pulls[label] += got
        cells.append(", ".join(f"{x:.0f}" for x in got) or "failed")
    print(f"| {r} | {cells[0]} | {cells[1]} |")
for label in "AB":
    p = pulls[label]
    if p:
        over = sum(x >= 1000 for x in p)
        print(f"\n{label} = {revs[label]}: median {statistics.median(p):.0f} MB/s of {len(p)} pulls, "
              f"{over} at 1 GB/s or more")
print(f"\nreports: {work}")
PY
