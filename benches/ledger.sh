#!/usr/bin/env bash
# The ledger's readers, before and after, side by side in one go (issue 16).
#
#   benches/ledger.sh BEFORE_ORCH [AFTER_ORCH] [DIR] [runs]
#
# BEFORE_ORCH is an orch binary built from the base (copy target/release/orch before changing
# anything); AFTER_ORCH defaults to target/release/orch. DIR is where the ledgers live: /dev/shm
# (tmpfs, the default) or a folder under /tmp (disk). Two ledgers are generated with python3's
# sqlite3, in the schema the binaries themselves create:
#
#   big    1,000 finished runs x 20 agent steps over the last 24 hours; each step 10 estimate rows
#          of its model, then a final row for it and one for a second model (240,000 rows).
#   eight  one finished run of 8 agent steps with 5,000 estimate rows each (one per message, as
#          the per-message writer left them) and two final rows: 40,016 rows.
#
# Timed with hyperfine: `orch ledger`, `orch ledger --by job`, and `orch plan` of a 20-job manifest
# whose window budget and forecasts read the big ledger. Each binary gets its own copy of each
# ledger, so a migration one of them runs cannot touch the other's file.
#
# Last, the usage rows one real run of 8 simulated agents (200 turns each, 2 ms apart) writes,
# with each binary.
#
# Needs hyperfine and python3 (apt-get install hyperfine).
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(realpath "${1:?usage: benches/ledger.sh BEFORE_ORCH [AFTER_ORCH] [DIR] [runs]}")"
after="$(realpath "${2:-target/release/orch}")"
base="${3:-/dev/shm}"
runs="${4:-10}"
work="$(mktemp -d "$base/orch-ledger-bench.XXXXXX")"
trap 'rm -rf "$work"' EXIT
echo "ledgers in $work ($(df --output=fstype "$work" | tail -1))"

# A ledger in the binaries' own schema: one run of `true`, then the generated rows.
printf '[settings]\nstartup_delay = "0s"\n\n[jobs.t]\nrun = ["true"]\n' > "$work/seed.toml"
"$before" run "$work/seed.toml" --quiet --state-dir "$work/seed" > /dev/null

python3 - "$work" <<'PY'
import os, shutil, sqlite3, sys, time
work = sys.argv[1]
now_ms = int(time.time() * 1000)

def iso(ms):
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms / 1000)) + ".000+00:00"

def make(name, runs):
    os.makedirs(f"{work}/{name}", exist_ok=True)
    path = f"{work}/{name}/ledger.sqlite"
    shutil.copy(f"{work}/seed/ledger.sqlite", path)
    db = sqlite3.connect(path)
    db.execute("DELETE FROM usage"); db.execute("DELETE FROM steps"); db.execute("DELETE FROM runs")
    usage = []
    for run_id, started, steps in runs:
        db.execute("INSERT INTO runs (id, name, manifest, run_dir, started_at, finished_at, status,"
                   " exit_code, pid) VALUES (?, 'bench', 'm', 'd', ?, ?, 'completed', 0, 1)",
                   (run_id, iso(started), iso(started + 60_000)))
        for step, estimates in steps:
            db.execute("INSERT INTO steps (run_id, step, job, label, is_agent, status) VALUES"
                       " (?, ?, ?, ?, 1, 'completed')", (run_id, step, f"j{step}", f"j{step}"))
            at = started + step
            for _ in range(estimates):
                usage.append((run_id, step, iso(at), at, "claude-sonnet-4-5", "estimate",
                              3, 20, 1000, 50, 0.0009, 900_000))
            # The final: Claude Code's figures less the estimates, then a second model's share.
            usage.append((run_id, step, iso(at), at, "claude-sonnet-4-5", "final",
                          -5, 40, -500, 10, 0.001, 1_000_000))
            usage.append((run_id, step, iso(at), at, "claude-haiku-4-5", "final",
                          100, 30, 0, 0, 0.0002, 200_000))
    db.executemany("INSERT INTO usage (run_id, step, at, at_ms, model, kind, input, output,"
                   " cache_read, cache_creation, usd, usd_nanos) VALUES"
                   " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", usage)
    db.commit()
    print(f"  {name}: {db.execute('SELECT COUNT(*) FROM usage').fetchone()[0]} usage rows")
    db.close()

day = 24 * 3600 * 1000
make("big", [(f"r{i:04}", now_ms - day + i * (day // 1000) - 120_000, [(s, 10) for s in range(20)])
             for i in range(1000)])
make("eight", [("r8", now_ms - 3_600_000, [(s, 5000) for s in range(8)])])
for who in ("before", "after"):
    for name in ("big", "eight"):
        os.makedirs(f"{work}/{who}-{name}", exist_ok=True)
        shutil.copy(f"{work}/{name}/ledger.sqlite", f"{work}/{who}-{name}/ledger.sqlite")
PY

{
  printf 'name = "bench"\n\n[settings]\nstate_dir = "state"\n\n'
  printf '[budget]\nwindow = { period = "24h", usd = 1000.0 }\n\n'
  for i in $(seq 0 19); do printf '[jobs.j%d]\nprompt = "p"\n\n' "$i"; done
} > "$work/plan.toml"
for who in before after; do
  mkdir -p "$work/plan-$who"
  cp "$work/plan.toml" "$work/plan-$who/orch.toml"
  ln -s "$work/$who-big" "$work/plan-$who/state"
done

bench() {
  local title="$1" args="$2" ledger="$3"
  echo "== $title"
  hyperfine --warmup 1 --runs "$runs" -N --style basic \
    -n before "$before $args --state-dir $work/before-$ledger" \
    -n after "$after $args --state-dir $work/after-$ledger" 2>&1 |
    grep -E '^(  Time|Benchmark|  [0-9.]+ ± |    [0-9.]+ ± )|faster|slower' || true
}
bench "orch ledger, 1,000 runs x 20 steps" "ledger --since 30d" big
bench "orch ledger --by job, 1,000 runs x 20 steps" "ledger --since 30d --by job" big
bench "orch ledger, one 8-agent run" "ledger --since 30d" eight
bench "orch ledger --by job, one 8-agent run" "ledger --since 30d --by job" eight
echo "== orch plan with a window budget and forecasts, 1,000 runs x 20 steps"
hyperfine --warmup 1 --runs "$runs" -N --style basic \
  -n before "$before plan $work/plan-before/orch.toml" \
  -n after "$after plan $work/plan-after/orch.toml" 2>&1 |
  grep -E '^(  Time|Benchmark|  [0-9.]+ ± |    [0-9.]+ ± )|faster|slower' || true
# The figures must not change.
for ledger in big eight; do
  for by in run job model day command; do
    a="$("$before" ledger --since 30d --by "$by" --format json --state-dir "$work/before-$ledger" | grep -v '"since"')"
    b="$("$after" ledger --since 30d --by "$by" --format json --state-dir "$work/after-$ledger" | grep -v '"since"')"
    [ "$a" = "$b" ] || { echo "DIFFERENT figures: $ledger --by $by"; exit 1; }
  done
done
echo "== the same figures before and after (ledger --by run/job/model/day/command, both ledgers)"

echo "== usage rows written by one run of 8 simulated agents x 200 turns"
{
  printf '[settings]\nstartup_delay = "0s"\n\n'
  for i in $(seq 1 8); do
    printf '[jobs.a%d]\nprompt = "p"\nenv = { ORCH_SIM_TURNS = "200", ORCH_SIM_DELAY_MS = "2" }\n\n' "$i"
  done
} > "$work/sim8.toml"
for who in before after; do
  bin="$before"; [ "$who" = after ] && bin="$after"
  ORCH_SIM_STATE_DIR="$work/sim-$who" "$bin" run "$work/sim8.toml" --simulate --quiet \
    --state-dir "$work/state8-$who" > /dev/null
  python3 - "$work/state8-$who/ledger.sqlite" "$who" <<'PY'
import sqlite3, sys
db = sqlite3.connect(sys.argv[1])
rows, tokens, nanos = db.execute(
    "SELECT COUNT(*), SUM(input + output + cache_read + cache_creation), SUM(usd_nanos) FROM usage").fetchone()
kinds = dict(db.execute("SELECT kind, COUNT(*) FROM usage GROUP BY kind").fetchall())
print(f"  {sys.argv[2]:>6}: {rows} rows {kinds}, {tokens} tokens, {nanos} nano-dollars")
PY
done
