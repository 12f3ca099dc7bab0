#!/usr/bin/env bash
# orch on Slurm vs the floor: 200 steps of `true` through orch (executor = "slurm", per-run
# allocation, max_parallel P) against the same 200 `srun --exact` calls from a shell loop
# (xargs -P P) inside one `salloc --no-shell` allocation of the same size. Both pay for their
# allocation. Interleaved rounds (hyperfine alternates nothing, so rounds are run by hand:
# orch, loop, orch, loop, ...), medians and the ratio printed at the end.
#
#   benches/slurm.sh [rounds] [parallel]     (default 10 rounds, 8-way)
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
  "$orch" run --quiet "$work/orch.toml" >/dev/null
}

one_loop() {
  local job
  job=$(salloc --no-shell --ntasks="$par" --spread-job --job-name=bench-loop 2>&1 |
    sed -n 's/.*Granted job allocation \([0-9]*\).*/\1/p')
  seq 1 200 | xargs -P "$par" -I{} srun -Q --input=none --jobid="$job" --exact -N1 -n1 true
  scancel "$job"
}

now() { date +%s.%N; }
: >"$work/orch.times"
: >"$work/loop.times"
for r in $(seq 1 "$rounds"); do
  t0=$(now); one_orch; t1=$(now); one_loop; t2=$(now)
  echo "$t1 - $t0" | bc >>"$work/orch.times"
  echo "$t2 - $t1" | bc >>"$work/loop.times"
  echo "round $r: orch $(tail -1 "$work/orch.times") s, srun loop $(tail -1 "$work/loop.times") s"
done
median() { sort -n "$1" | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
mo=$(median "$work/orch.times")
ml=$(median "$work/loop.times")
echo "median: orch ${mo} s, srun loop ${ml} s, ratio $(echo "scale=3; $mo / $ml" | bc)x (200 steps, ${par}-way, ${rounds} rounds)"
