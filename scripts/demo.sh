#!/usr/bin/env bash
# A short demo on the embedded default hub: start the hub emulator, pull a model with hfmesh,
# show the Hugging Face cache tree it wrote, and pull again (instant, nothing downloaded).
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --locked --quiet
bin="$PWD/target/debug/hfmesh"
work="$(mktemp -d)"
"$bin" hub-emulator > "$work/emulator.out" 2> "$work/emulator.err" &
emulator=$!
trap 'kill "$emulator" 2>/dev/null; rm -rf "$work"' EXIT

for _ in $(seq 1 100); do
    [ -s "$work/emulator.out" ] && break
    kill -0 "$emulator" 2>/dev/null || { cat "$work/emulator.err" >&2; exit 1; }
    sleep 0.1
done
url="$(head -n 1 "$work/emulator.out")"
echo "== hub emulator at $url (embedded demo repos)"

echo "== hfmesh pull hfmesh-demo/tiny-model"
"$bin" pull hfmesh-demo/tiny-model --endpoint "$url" --cache-dir "$work/hub"

echo "== the cache tree"
(cd "$work/hub" && find . -mindepth 1 | sort | while read -r p; do
    if [ -L "$p" ]; then echo "$p -> $(readlink "$p")"; else echo "$p"; fi
done)
echo "refs/main = $(cat "$work/hub/models--hfmesh-demo--tiny-model/refs/main")"

echo "== hfmesh pull again (already complete: no download)"
"$bin" pull hfmesh-demo/tiny-model --endpoint "$url" --cache-dir "$work/hub"
echo "== emulator stats: $(curl -s "$url/_emulator/stats" 2>/dev/null || echo n/a)"
