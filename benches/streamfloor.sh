#!/usr/bin/env bash
# Stream accounting against its floor, before and after, in interleaved rounds (issue 16).
#
#   benches/streamfloor.sh BEFORE_ORCH [AFTER_ORCH] [DIR] [rounds]
#
# 8 simulated agents each stream TURNS (env, default 2,000) assistant messages with usage as fast
# as they can (ORCH_SIM_TURNS, ORCH_SIM_DELAY_MS=0). Each round runs, in turn: the before binary, the
# after binary, and the after binary with ORCH_BENCH_FLOOR=1 (bench only: agent stdout drained
# into the same logs and framed, never parsed or accounted). Whole process-tree CPU (user+sys of
# orch and every child it waited for: GNU time's figures) and the usage rows written; medians.
# DIR holds the state: /dev/shm (tmpfs, the default) or a folder under /tmp (disk).
# The old Python tool (netra-zen) is not in this script yet.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(realpath "${1:?usage: benches/streamfloor.sh BEFORE_ORCH [AFTER_ORCH] [DIR] [rounds]}")"
after="$(realpath "${2:-target/release/orch}")"
base="${3:-/dev/shm}"
rounds="${4:-5}"
work="$(mktemp -d "$base/orch-streamfloor.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "state in $work ($(df --output=fstype "$work" | tail -1)), $rounds rounds"
{
  printf '[settings]\nstartup_delay = "0s"\n\n'
  for i in $(seq 1 8); do
    printf '[jobs.a%d]\nprompt = "stream"\nenv = { ORCH_SIM_TURNS = "%s", ORCH_SIM_DELAY_MS = "0" }\n\n' "$i" "${TURNS:-2000}"
  done
} > "$work/stream8.toml"
one() { # name binary floor round
  local state="$work/state-$1-$4"
  ORCH_BENCH_FLOOR="$3" ORCH_SIM_STATE_DIR="$work/sim-$1-$4" /usr/bin/time -f "%U %S %e" -o "$work/t-$1-$4" \
    "$2" run "$work/stream8.toml" --simulate --quiet --state-dir "$state" > /dev/null 2>&1 || true
  python3 - "$state/ledger.sqlite" >> "$work/t-$1-$4" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM usage").fetchone()[0])
PY
  du -sb "$state/runs" | cut -f1 >> "$work/t-$1-$4"
  rm -rf "$state" "$work/sim-$1-$4"
}
for r in $(seq 1 "$rounds"); do
  one before "$before" 0 "$r"
  one after "$after" 0 "$r"
  one floor "$after" 1 "$r"
done
python3 - "$work" "$rounds" <<'PY'
import statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for name in ("before", "after", "floor"):
    cpu, wall, rows, logs = [], [], [], []
    for r in range(1, rounds + 1):
        lines = open(f"{work}/t-{name}-{r}").read().split("\n")
        u, s, e = map(float, lines[-4].split())
        cpu.append(u + s); wall.append(e); rows.append(int(lines[-3])); logs.append(int(lines[-2]))
    med[name] = statistics.median(cpu)
    print(f"  {name:>6}: CPU {statistics.median(cpu):.3f} s (min {min(cpu):.3f}, max {max(cpu):.3f}),"
          f" wall {statistics.median(wall):.2f} s, usage rows {statistics.median(rows):.0f},"
          f" logs {statistics.median(logs)/1e6:.1f} MB")
print(f"  before/after {med['before']/med['after']:.2f}x, after/floor {med['after']/med['floor']:.2f}x,"
      f" before/floor {med['before']/med['floor']:.2f}x")
PY
