#!/usr/bin/env bash
# What the live display costs: 100 simulated agents streaming as fast as they can, orch's own CPU
# time (user + system, its children excluded, from results.json) with the terminal reporter on a
# pseudo-terminal versus `--quiet`. Report the ratio, not absolute times: the machines are shared.
#
#   benches/display.sh [runs] [mb-per-agent]
#
# On a shared machine the A/B difference drowns in run-to-run noise; with PERF=1 one more
# terminal run is sampled with `perf record -p` (orch only, not its agents) and the share of
# orch's CPU spent in the terminal reporter is printed, which is the steadier figure.
#
# Needs `script` (util-linux) for the pseudo-terminal, and perf for PERF=1. Builds orch in
# release mode.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-3}"
mb="${2:-2}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release --quiet
case "$target" in /*) ;; *) target="$PWD/$target" ;; esac
orch="$target/release/orch"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

{
  printf 'name = "display-bench"\n[settings]\nstartup_delay = "0s"\n\n'
  printf '[budget]\nmode = "warn"\ntokens = 100_000_000_000\nusd = 1_000_000.0\n'
  printf 'commands."/review" = { usd = 1_000_000.0 }\n\n'
  for i in $(seq 1 100); do
    printf '[jobs.agent-%03d]\ncommand = "/review part %d"\n' "$i" "$i"
    printf 'env = { ORCH_SIM_STREAM_MB = "%s", ORCH_SIM_DELAY_MS = "0", ORCH_SIM_TURNS = "40" }\n\n' "$mb"
  done
} > "$work/agents.toml"

cpu() { # the orch CPU seconds of the only run under state dir $1
  python3 -c 'import json,glob,sys; r=json.load(open(glob.glob(sys.argv[1]+"/runs/*/results.json")[0])); m=r["metadata"]; print(m["orch_cpu_seconds"], m["duration_seconds"], r["completed"])' "$1"
}

echo "== display: 100 agents x ${mb} MB of stream-json each, ${runs} runs per mode"
for i in $(seq 1 "$runs"); do
  for mode in quiet terminal; do
    state="$work/state-$mode-$i"
    if [ "$mode" = quiet ]; then
      ORCH_SIM_STATE_DIR="$work/sim" "$orch" run "$work/agents.toml" --simulate --quiet \
        --state-dir "$state" > /dev/null
    else
      # A 160x50 pseudo-terminal; what orch draws is thrown away by `script`.
      ORCH_SIM_STATE_DIR="$work/sim" script -q -e -c \
        "stty cols 160 rows 50; $orch run $work/agents.toml --simulate --state-dir $state" \
        /dev/null > /dev/null
    fi
    read -r cpu wall done < <(cpu "$state")
    echo "  $mode run $i: orch CPU ${cpu} s, wall ${wall} s, ${done}/100 completed"
    echo "$mode $cpu" >> "$work/cpu.txt"
  done
done
python3 - "$work/cpu.txt" <<'PY'
import sys, statistics
rows = [l.split() for l in open(sys.argv[1])]
q = statistics.median(float(c) for m, c in rows if m == "quiet")
t = statistics.median(float(c) for m, c in rows if m == "terminal")
print(f"  median orch CPU: quiet {q:.2f} s, terminal {t:.2f} s; the display costs {t - q:+.2f} s"
      f" = {100 * (t - q) / q:+.1f} % of the quiet run's CPU (terminal/quiet {t / q:.3f}x)")
PY

if [ "${PERF:-0}" = 1 ]; then
  state="$work/state-perf"
  ORCH_SIM_STATE_DIR="$work/sim" script -q -e -c \
    "stty cols 160 rows 50; $orch run $work/agents.toml --simulate --state-dir $state" \
    /dev/null > /dev/null &
  pid=""
  for _ in $(seq 1 200); do
    pid=$(pgrep -f "^$orch run $work/agents.toml" | head -1 || true)
    [ -n "$pid" ] && break
    sleep 0.02
  done
  perf record -q -F 999 --call-graph dwarf,16384 -p "$pid" -o "$work/perf.data" 2> /dev/null
  wait
  perf report -i "$work/perf.data" --children --sort symbol -g none 2> /dev/null \
    | python3 -c '
import re, sys
share = {"tick": 0.0, "report": 0.0, "finish": 0.0}
for line in sys.stdin:
    m = re.match(r"\s*([\d.]+)%\s+[\d.]+%.*<orch::report::terminal::Terminal as orch::report::Reporter>::(\w+)", line)
    if m and m.group(2) in share:
        share[m.group(2)] += float(m.group(1))
total = sum(share.values())
print("  perf: the terminal reporter is %.1f %% of orch CPU (tick %.2f %%, report %.2f %%, finish %.2f %%)"
      % (total, share["tick"], share["report"], share["finish"]))
'
fi
