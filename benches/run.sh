#!/usr/bin/env bash
# Whole-run benchmarks of orch against its peers, measured side by side in one go. Report ratios,
# not absolute times: the machines are shared and noisy.
#
#   benches/run.sh [fanout|stream|plan|idle|all] [runs]
#   BEFORE=path/to/old/orch benches/run.sh spawn [rounds]
#
#   fanout  1,000 steps of `true`, no stagger, max_parallel 2, 8 and 64: orch vs `xargs -P` (the
#           floor) and GNU `parallel` (the classic peer); per-step overhead = (time - xargs) / 1000.
#   stream  16 concurrent simulated agents streaming 50 MB of stream-json each: orch's own CPU time
#           per MB (children excluded, from results.json) and its peak memory.
#   plan    `orch plan` on generated manifests of 1,000, 10,000 and 100,000 steps: time and peak
#           memory (growth should be near linear).
#   idle    1,000 concurrent agents that wait: orch's memory per running step and CPU while waiting.
#   spawn   per-step overhead, an old orch binary ($BEFORE) against this one in interleaved rounds,
#           with xargs, GNU parallel and ninja: fan-out (tmpfs and disk), a 10,000-step chain,
#           per-step CPU at 1k and 10k steps, idle cost (benches/spawn.py; SPAWN_BENCH picks parts).
#
# Needs hyperfine, GNU parallel and GNU time (apt-get install hyperfine parallel time).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
runs="${2:-10}"
cargo build --release --quiet
orch="$PWD/target/release/orch"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

fanout() {
  echo "== fan-out: 1000 steps of true"
  for p in 2 8 64; do
    {
      printf '[settings]\nstartup_delay = "0s"\nmax_parallel = %d\n\n' "$p"
      for i in $(seq 1 1000); do printf '[jobs.t%d]\nrun = ["true"]\n\n' "$i"; done
    } > "$work/true-$p.toml"
    hyperfine --warmup 1 --runs "$runs" --export-json "$work/fanout-$p.json" -N \
      -n orch "$orch run $work/true-$p.toml --quiet --state-dir $work/state-$p" \
      -n xargs "bash -c 'seq 1000 | xargs -P $p -I{} true'" \
      -n parallel "bash -c 'seq 1000 | parallel -j $p true'" > /dev/null
    python3 - "$work/fanout-$p.json" "$p" <<'PY'
import json, sys
r = {x["command"]: x["mean"] for x in json.load(open(sys.argv[1]))["results"]}
o, x, g = r["orch"], r["xargs"], r["parallel"]
print(f"  -P {sys.argv[2]:>2}: orch {o*1000:7.0f} ms  xargs {x*1000:6.0f} ms  parallel {g*1000:7.0f} ms"
      f" | per step: orch {o/1000*1e6:5.0f} µs, xargs {x/1000*1e6:4.0f} µs,"
      f" parallel {g/1000*1e6:5.0f} µs | orch/xargs {o/x:.2f}x, orch/parallel {o/g:.2f}x")
PY
  done
}

stream() {
  echo "== streaming: 16 simulated agents x 50 MB"
  {
    printf '[settings]\nstartup_delay = "0s"\n\n'
    for i in $(seq 1 16); do
      printf '[jobs.a%d]\nprompt = "stream"\nenv = { ORCH_SIM_STREAM_MB = "50", ORCH_SIM_DELAY_MS = "0" }\n\n' "$i"
    done
  } > "$work/stream16.toml"
  for i in 1 2 3; do
    ORCH_SIM_STATE_DIR="$work/sim" /usr/bin/time -f "%M" -o "$work/stream-rss-$i" \
      "$orch" run "$work/stream16.toml" --simulate --quiet --state-dir "$work/state16" > /dev/null
  done
  python3 - "$work" <<'PY'
import json, sys, glob
rss = [int(open(p).read().split()[-1]) for p in sorted(glob.glob(sys.argv[1] + "/stream-rss-*"))]
for path, kb in zip(sorted(glob.glob(sys.argv[1] + "/state16/runs/*/results.json")), rss):
    r = json.load(open(path))
    mb = 16 * 50
    cpu = r["metadata"]["orch_cpu_seconds"]
    wall = r["metadata"]["duration_seconds"]
    print(f"  {mb} MB in {wall:.2f} s; orch CPU {cpu:.2f} s = {cpu/mb*1000:.2f} ms/MB"
          f" ({mb/cpu:.0f} MB per CPU-second); peak RSS {kb/1024:.1f} MB")
PY
}

plan() {
  echo "== plan: generated manifests"
  for n in 1000 10000 100000; do
    python3 - "$n" > "$work/plan-$n.toml" <<'PY'
import sys
n = int(sys.argv[1])
print('[settings]\nstartup_delay = "1s"\nmax_parallel = 16\n')
# Every tenth job is an agent with a pre-command (two steps); steps = 1.1 x jobs.
jobs = n * 10 // 11
for i in range(jobs):
    print(f'[jobs.job-{i}]')
    print(f'command = "/review part {i}"\npre_commands = ["/clear"]' if i % 10 == 0 else f'run = ["true", "{i}"]')
    if i == 1:
        print('needs = ["job-0"]')
    elif i > 1:
        other = 0 if i % 5 == 0 else (i * 7919 + 13) % i
        print(f'needs = ["job-{i-1}", "job-{other}"]')
    print()
PY
    /usr/bin/time -f "%e %M" -o "$work/plan-$n.time" "$orch" plan "$work/plan-$n.toml" \
      --claude-path /bin/true > "$work/plan-$n.out"
    read -r secs kb < "$work/plan-$n.time"
    steps=$(grep -c '^ *[0-9]\+  ' "$work/plan-$n.out" || true)
    echo "  $n steps ($steps listed): ${secs} s, peak RSS $((kb / 1024)) MB"
  done
}

idle() {
  echo "== idle: 1000 waiting agents"
  for n in 200 1000; do
    {
      printf '[settings]\nstartup_delay = "0s"\n\n'
      for i in $(seq 1 "$n"); do printf '[jobs.a%d]\nprompt = "wait"\nenv = { ORCH_SIM_HANG = "1" }\n\n' "$i"; done
    } > "$work/idle-$n.toml"
    ORCH_SIM_STATE_DIR="$work/sim" ORCH_GRACE_INT=5s "$orch" run "$work/idle-$n.toml" --simulate \
      --quiet --state-dir "$work/idle-state" > /dev/null 2>&1 &
    pid=$!
    for _ in $(seq 1 600); do
      [ "$(pgrep -P "$pid" -c || true)" -ge "$n" ] && break
      sleep 0.2
    done
    sleep 2
    rss=$(awk '/VmRSS/ {print $2}' "/proc/$pid/status")
    t1=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    sleep 10
    t2=$(awk '{print $14 + $15}' "/proc/$pid/stat")
    echo "  $n agents: orch RSS ${rss} kB, CPU while waiting $(( (t2 - t1) * 10 )) ms per 10 s"
    echo "$n $rss" >> "$work/idle.txt"
    kill -INT "$pid"
    wait "$pid" || true
  done
  python3 - "$work/idle.txt" <<'PY'
import sys
(n1, r1), (n2, r2) = [tuple(map(int, l.split())) for l in open(sys.argv[1])]
print(f"  memory per running step: {(r2 - r1) / (n2 - n1):.1f} kB")
PY
}

case "$what" in
  fanout) fanout ;;
  stream) stream ;;
  plan) plan ;;
  idle) idle ;;
  spawn)
    for tool in ninja parallel; do
      command -v "$tool" > /dev/null || apt-get install -y ninja-build parallel > /dev/null
    done
    python3 benches/spawn.py "${BEFORE:?set BEFORE to the orch binary to compare with}" "$orch" "$runs" ;;
  all) fanout; stream; plan; idle ;;
  *) echo "usage: $0 [fanout|stream|plan|idle|spawn|all] [runs]" >&2; exit 2 ;;
esac
