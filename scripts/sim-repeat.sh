#!/usr/bin/env bash
# Plays one simulation scenario several times (mesh only, no baseline) and tabulates each run's
# headline figures against the scenario's targets: how often a target holds, not whether it held
# once. Not part of CI.
#
#   bash scripts/sim-repeat.sh simulations/scenarios/storm-16.toml 8 /tmp/storm-runs
#
# Each run's full report stays in OUT/run-N/; the table is printed and written to OUT/runs.md.
set -euo pipefail
cd "$(dirname "$0")/.."

scenario="${1:?usage: sim-repeat.sh SCENARIO.toml RUNS OUT_DIR}"
runs="${2:?usage: sim-repeat.sh SCENARIO.toml RUNS OUT_DIR}"
out="${3:?usage: sim-repeat.sh SCENARIO.toml RUNS OUT_DIR}"
case "$runs" in '' | *[!0-9]* | 0) echo "sim-repeat.sh: RUNS must be a whole number from 1" >&2; exit 2 ;; esac
[ "$runs" -le 100 ] || { echo "sim-repeat.sh: at most 100 runs" >&2; exit 2; }

if [ ! -x .venv/bin/python ] || ! .venv/bin/python -c "import huggingface_hub" 2>/dev/null; then
    echo "sim-repeat.sh: no .venv with huggingface_hub; run scripts/test.sh once first" >&2
    exit 2
fi
# The build the runs play, named before anything can change under them.
build="$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo '+changes')"
cargo build --locked --quiet
mkdir -p "$out"
for i in $(seq 1 "$runs"); do
    echo "sim-repeat.sh: run $i of $runs" >&2
    target/debug/hfmesh simulate "$scenario" --out "$out/run-$i" --python .venv/bin/python \
        >"$out/run-$i.log" 2>&1 || echo "sim-repeat.sh: run $i exited $?" >&2
done

.venv/bin/python - "$scenario" "$runs" "$out" "$build" <<'PY' | tee "$out/runs.md"
import json, pathlib, sys, tomllib

scenario, runs, out, commit = sys.argv[1], int(sys.argv[2]), pathlib.Path(sys.argv[3]), sys.argv[4]
targets = tomllib.loads(pathlib.Path(scenario).read_text()).get("targets", {})
egress_mark = targets.get("hub_egress_ratio")
time_mark = targets.get("all_ready_ratio")
print(f"# {pathlib.Path(scenario).stem}: {runs} mesh-only runs at {commit}\n")
print("| run | Hub egress ÷ model | all ready ÷ one host | ready | trees ok | CPU busy mean | targets |")
print("|---|---|---|---|---|---|---|")
met = played = 0
for i in range(1, runs + 1):
    path = out / f"run-{i}" / "report.json"
    if not path.exists():
        print(f"| {i} | no report (see run-{i}.log) | | | | | no |")
        continue
    played += 1
    r = json.loads(path.read_text())
    m = r["mesh"]
    egress, ratio = r["hub_egress_ratio"], r["all_ready_ratio"]
    ok, checked = m["trees_ok"] or [0, 0]
    ready = f'{m["ready"]} / {m["expected"]}'
    verdicts = r.get("verdicts") or []
    holds = bool(verdicts) and all(v.get("met") for v in verdicts) and m["ready"] == m["expected"]
    met += holds
    fmt = lambda x: "—" if x is None else f"{x:.3f}"
    print(f"| {i} | {fmt(egress)} | {fmt(ratio)} | {ready} | {ok} of {checked} | "
          f"{m['cpu_busy_mean']:.0%} | {'yes' if holds else 'no'} |")
print(f"\nTargets (egress ≤ {egress_mark}, time ≤ {time_mark}, every tree passing) met in "
      f"**{met} of {runs}** runs ({played} produced a report).")
PY
