#!/usr/bin/env bash
# Run history on 10,000 runs (issue 18): `orch runs`, `orch runs --format json`,
# `orch runs --status failed` and `orch show latest`, each beside the same command on an empty
# state folder (orch's start-up alone), in one hyperfine invocation so the rounds interleave.
#
#   benches/history.sh [ORCH] [DIR] [RUNS]
#
# ORCH defaults to target/release/orch; DIR is where the state folders live: /dev/shm (tmpfs,
# the default) or a folder under /tmp (disk). The ledger is seeded through orch's own API by
# examples/seed_history.rs (10,000 runs of three steps over 10 days, one in ten failed).
#
# Needs hyperfine (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
orch="$(realpath "${1:-target/release/orch}")"
base="${2:-/dev/shm}"
runs="${3:-10000}"
work="$(mktemp -d "$base/orch-history-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "state in $work ($(df --output=fstype "$work" | tail -1))"
cargo build --release --quiet --example seed_history
target/release/examples/seed_history "$work/full" "$runs" 10
mkdir -p "$work/empty"
# A run of its own in the empty folder, so that `show latest` has one there too.
printf '[settings]\nstartup_delay = "0s"\n\n[jobs.t]\nrun = ["true"]\n' > "$work/t.toml"
"$orch" run "$work/t.toml" --quiet --state-dir "$work/empty" > /dev/null
# Opening migrates nothing more after the first time: warm both.
"$orch" runs --state-dir "$work/full" > /dev/null
hyperfine -N --warmup 3 --runs 30 --export-markdown "$work/table.md" \
  -n "runs (1 run)" "$orch runs --state-dir $work/empty" \
  -n "runs" "$orch runs --state-dir $work/full" \
  -n "runs --format json" "$orch runs --format json --state-dir $work/full" \
  -n "runs --status failed" "$orch runs --status failed --state-dir $work/full" \
  -n "show latest" "$orch show latest --state-dir $work/full" \
  -n "runs --limit 0 --format json (all)" "$orch runs --limit 0 --format json --state-dir $work/full"
cat "$work/table.md"
