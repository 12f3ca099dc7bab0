#!/usr/bin/env bash
# orch on Slurm vs the floor: 200 steps of `true` through orch (executor = "slurm", per-run
# allocation, max_parallel P) against the same 200 `srun --exact` calls from a shell loop
# (xargs -P P) inside one `salloc --no-shell` allocation of the same size. Both pay for their
# allocation. Interleaved rounds (hyperfine alternates nothing, so rounds are run by hand:
# orch, loop, orch, loop, ...), medians and the ratio printed at the end.
#
#   benches/slurm.sh [rounds] [parallel]     (default 10 rounds, 8-way)
#   BEFORE=path/to/old/orch benches/slurm.sh ...   also an old orch binary, in the same rounds
#
# Each side's wall time and the CPU (user+sys) of its own process tree (orch or xargs, with their
# `srun`s; the step wrapper on the node runs under slurmd and is counted on neither side).
#
# Needs the test cluster (.ci/slurm.sh start) or any SLURM_CONF; state in $TMPDIR (default /tmp).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds="${1:-10}"
par="${2:-8}"
.ci/slurm.sh start
eval "$(.ci/slurm.sh env)"
cargo build --release --quiet
orch="$PWD/target/release/orch"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
{
  printf '[settings]\nexecutor = "slurm"\nstartup_delay = "0s"\nmax_parallel = %d\n\n' "$par"
  for i in $(seq 1 200); do printf '[jobs.t%03d]\nrun = ["true"]\n\n' "$i"; done
} >"$work/orch.toml"

one_orch() {
  rm -rf "$work/.orch"
  "$1" run --quiet "$work/orch.toml" >/dev/null
}

one_loop() {
  local job
  job=$(salloc --no-shell --ntasks="$par" --spread-job --job-name=bench-loop 2>&1 |
    sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
  seq 1 200 | xargs -P "$par" -I{} srun -Q --input=none --jobid="$job" --exact -N1 -n1 true
  scancel "$job"
}

# Runs one side, appending "wall cpu" to $work/<name>.times.
timed() {
  local name=$1
  shift
  local TIMEFORMAT='%R %U %S'
  { time "$@" 2>/dev/null; } 2>"$work/t"
  awk '{printf "%s %.2f\n", $1, $2 + $3}' "$work/t" >>"$work/$name.times"
}

sides=(orch loop)
[ -n "${BEFORE:-}" ] && sides=(before orch loop)
for r in $(seq 1 "$rounds"); do
  line="round $r:"
  for side in "${sides[@]}"; do
    case $side in
      before) timed before one_orch "$BEFORE" ;;
      orch) timed orch one_orch "$orch" ;;
      loop) timed loop one_loop ;;
    esac
    line+=" $side $(tail -1 "$work/$side.times" | awk '{print $1 " s (cpu " $2 " s)"}')"
  done
  echo "$line"
done
median() { awk -v c="$2" '{print $c}' "$1" | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
ml=$(median "$work/loop.times" 1)
for side in "${sides[@]}"; do
  m=$(median "$work/$side.times" 1)
  echo "median $side: ${m} s, cpu $(median "$work/$side.times" 2) s, ratio to the srun loop $(echo "scale=3; $m / $ml" | bc)x"
done
echo "(200 steps, ${par}-way, ${rounds} rounds)"
