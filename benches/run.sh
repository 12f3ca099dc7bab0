#!/usr/bin/env bash
# Whole-run benchmarks of `orch run`, measured side by side in one go (ratios, not absolute times):
#   1. 500 steps of `true`, no stagger, 8 at once: orch against `xargs -P 8` running the same
#      commands; orch's overhead per step is the difference divided by 500.
#   2. 16 concurrent simulated agents streaming 50 MB of stream-json each: orch's own CPU time
#      (user + system, children excluded, from results.json) per MB read and parsed.
# Needs hyperfine (apt-get install hyperfine). Usage: benches/run.sh [runs]
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-10}"
cargo build --release --quiet
orch="$PWD/target/release/orch"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

{
  printf '[settings]\nstartup_delay = "0s"\nmax_parallel = 8\n\n'
  for i in $(seq 1 500); do printf '[jobs.t%d]\nrun = ["true"]\n\n' "$i"; done
} > "$work/true500.toml"

echo "== 500 steps of true, 8 at once"
hyperfine --warmup 2 --runs "$runs" --export-json "$work/true500.json" \
  -n orch "$orch run $work/true500.toml --quiet --state-dir $work/state" \
  -n "xargs -P 8" "seq 500 | xargs -P 8 -I{} true"
python3 - "$work/true500.json" <<'PY'
import json, sys
r = {x["command"]: x for x in json.load(open(sys.argv[1]))["results"]}
o, x = r["orch"]["mean"], r["xargs -P 8"]["mean"]
print(f"orch {o*1000:.1f} ms, xargs {x*1000:.1f} ms, ratio {o/x:.2f}x, "
      f"orch overhead per step {(o - x) / 500 * 1e6:.0f} µs")
PY

{
  printf '[settings]\nstartup_delay = "0s"\n\n'
  for i in $(seq 1 16); do
    printf '[jobs.a%d]\nprompt = "stream"\nenv = { ORCH_SIM_STREAM_MB = "50", ORCH_SIM_DELAY_MS = "0" }\n\n' "$i"
  done
} > "$work/stream16.toml"

echo "== 16 simulated agents streaming 50 MB each"
for i in 1 2 3; do
  ORCH_SIM_STATE_DIR="$work/sim" "$orch" run "$work/stream16.toml" --simulate --quiet \
    --state-dir "$work/state16" >/dev/null
done
python3 - "$work/state16" <<'PY'
import json, sys, glob
for path in sorted(glob.glob(sys.argv[1] + "/runs/*/results.json")):
    r = json.load(open(path))
    mb = sum(s["usage"] is not None and 1 or 0 for i in r["instances"].values() for s in i["steps"]) * 50
    cpu = r["metadata"]["orch_cpu_seconds"]
    wall = r["metadata"]["duration_seconds"]
    print(f"{mb} MB in {wall:.2f} s wall; orch CPU {cpu:.2f} s = {cpu / mb * 1000:.2f} ms per MB "
          f"({mb / cpu:.0f} MB per CPU-second)")
PY
