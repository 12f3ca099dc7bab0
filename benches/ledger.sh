#!/usr/bin/env bash
# The ledger's readers, before and after, in interleaved rounds (issue 16).
#
#   benches/ledger.sh BEFORE_ORCH [AFTER_ORCH] [ROUNDS] [DISK_DIR]
#
# BEFORE_ORCH is an orch binary built from the base (copy target/release/orch before changing
# anything); AFTER_ORCH defaults to target/release/orch; ROUNDS defaults to 11. The ledgers live
# on tmpfs (/dev/shm) and on disk (DISK_DIR, default /tmp), reported separately. They are seeded
# through orch's own ledger API by examples/seed_history.rs, in this tree's schema (a BEFORE
# binary of an older schema refuses them as newer than it knows):
#
#   big    1,000 runs named `bench` x 20 agent steps over the last 23 hours; each step 10
#          estimate rows of its model, then a final row for it and one for a second model
#          (240,000 rows; one run in ten has its last step failed).
#   eight  one run of 8 agent steps with 5,000 estimate rows each (one per message, as the
#          per-message writer left them) and two final rows: 40,016 rows.
#
# Timed: `orch ledger` and `orch ledger --by job` on big, `orch ledger` on eight, and `orch plan`
# of a 20-job manifest named `bench` whose window budget and forecasts read big. Every round runs
# each (command, state, binary) once, in an order that rotates from round to round; the table
# shows the medians of wall time and of the process's CPU (user + system). Each binary reads its
# own copy of each ledger, so a migration one of them runs cannot touch the other's file.
#
# Then both binaries must print the same JSON for every `--by` on both ledgers, and the usage rows
# one real run of 8 simulated agents (200 turns each, 2 ms apart) writes are counted per binary.
#
# Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."
before="$(realpath "${1:?usage: benches/ledger.sh BEFORE_ORCH [AFTER_ORCH] [ROUNDS] [DISK_DIR]}")"
after="$(realpath "${2:-target/release/orch}")"
rounds="${3:-11}"
disk="${4:-/tmp}"
tmpfs="$(mktemp -d /dev/shm/orch-ledger-bench.XXXXXX)"
ondisk="$(mktemp -d "$disk/orch-ledger-bench.XXXXXX")"
trap 'rm -rf "$tmpfs" "$ondisk"' EXIT
echo "ledgers in $tmpfs ($(df --output=fstype "$tmpfs" | tail -1)) and $ondisk ($(df --output=fstype "$ondisk" | tail -1))"

cargo build --release --quiet --example seed_history
seed=target/release/examples/seed_history
"$seed" "$tmpfs/seed-big" 1000 23h --steps 20 --estimates 10 --name bench
"$seed" "$tmpfs/seed-eight" 1 1h --steps 8 --estimates 5000 --name bench

{
  printf 'name = "bench"\n\n[settings]\nstate_dir = "state"\n\n'
  printf '[budget]\nwindow = { period = "24h", usd = 1000.0 }\n\n'
  for i in $(seq 0 19); do printf '[jobs.j%d]\nprompt = "p"\n\n' "$i"; done
} > "$tmpfs/plan.toml"
for base in "$tmpfs" "$ondisk"; do
  for who in before after; do
    for name in big eight; do
      mkdir -p "$base/$who-$name"
      cp "$tmpfs/seed-$name/ledger.sqlite" "$base/$who-$name/ledger.sqlite"
    done
    mkdir -p "$base/plan-$who"
    cp "$tmpfs/plan.toml" "$base/plan-$who/orch.toml"
    ln -s "$base/$who-big" "$base/plan-$who/state"
  done
done

python3 - "$before" "$after" "$rounds" "$tmpfs" "$ondisk" <<'PY'
import os, statistics, subprocess, sys, time
before, after, rounds, tmpfs, disk = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4], sys.argv[5]
bins = {"before": before, "after": after}
work = [
    ("`orch ledger`, 1,000 runs × 20 steps", lambda b, d, who: [b, "ledger", "--since", "30d", "--state-dir", f"{d}/{who}-big"]),
    ("`orch ledger --by job`, 1,000 runs × 20 steps", lambda b, d, who: [b, "ledger", "--since", "30d", "--by", "job", "--state-dir", f"{d}/{who}-big"]),
    ("`orch ledger`, one 8-agent run, 40,016 rows", lambda b, d, who: [b, "ledger", "--since", "30d", "--state-dir", f"{d}/{who}-eight"]),
    ("`orch plan`, window budget + 20 forecasts, 1,000 runs", lambda b, d, who: [b, "plan", "--simulate", f"{d}/plan-{who}/orch.toml"]),
]
cases = [(title, state, who, argv(bins[who], base, who))
         for title, argv in work for state, base in (("tmpfs", tmpfs), ("disk", disk))
         for who in ("before", "after")]

def once(argv):
    """Wall and CPU (user + system) seconds of one run; a failure stops the benchmark."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"failed: {' '.join(argv)}")
    return wall, usage.ru_utime + usage.ru_stime

for case in cases:  # warm: page cache, and a migration a binary may run on its first open
    once(case[3])
times = {i: [] for i in range(len(cases))}
for r in range(rounds):
    k = r % len(cases)
    for i in list(range(k, len(cases))) + list(range(k)):
        times[i].append(once(cases[i][3]))

def med(i, j):
    return 1000 * statistics.median(t[j] for t in times[i])

print(f"\nMedians of {rounds} interleaved rounds, ms (CPU = user + system of the process):\n")
print("| workload | state | before | after | after/before | before CPU | after CPU |")
print("|---|---|---|---|---|---|---|")
for i in range(0, len(cases), 2):
    title, state = cases[i][0], cases[i][1]
    b, a = med(i, 0), med(i + 1, 0)
    print(f"| {title} | {state} | {b:.1f} | {a:.1f} | {a / b:.2f}x | {med(i, 1):.1f} | {med(i + 1, 1):.1f} |")
PY

# The figures must not change.
for base in "$tmpfs" "$ondisk"; do
  for ledger in big eight; do
    for by in run job model day command; do
      a="$("$before" ledger --since 30d --by "$by" --format json --state-dir "$base/before-$ledger" | grep -v '"since"')"
      b="$("$after" ledger --since 30d --by "$by" --format json --state-dir "$base/after-$ledger" | grep -v '"since"')"
      [ "$a" = "$b" ] || { echo "DIFFERENT figures: $base $ledger --by $by"; exit 1; }
    done
  done
done
echo
echo "the same figures before and after (ledger --by run/job/model/day/command, both ledgers, both states)"

echo "usage rows written by one run of 8 simulated agents x 200 turns (state on disk)"
{
  printf '[settings]\nstartup_delay = "0s"\n\n'
  for i in $(seq 1 8); do
    printf '[jobs.a%d]\nprompt = "p"\nenv = { ORCH_SIM_TURNS = "200", ORCH_SIM_DELAY_MS = "2" }\n\n' "$i"
  done
} > "$ondisk/sim8.toml"
for who in before after; do
  bin="$before"; [ "$who" = after ] && bin="$after"
  ORCH_SIM_STATE_DIR="$ondisk/sim-$who" "$bin" run "$ondisk/sim8.toml" --simulate --quiet \
    --state-dir "$ondisk/state8-$who" > /dev/null
  python3 - "$ondisk/state8-$who/ledger.sqlite" "$who" <<'PY'
import sqlite3, sys
db = sqlite3.connect(f"file:{sys.argv[1]}?mode=ro", uri=True)
rows, tokens, nanos = db.execute(
    "SELECT COUNT(*), SUM(input + output + cache_read + cache_creation), SUM(usd_nanos) FROM usage").fetchone()
kinds = dict(db.execute("SELECT kind, COUNT(*) FROM usage GROUP BY kind").fetchall())
print(f"  {sys.argv[2]:>6}: {rows} rows {kinds}, {tokens} tokens, {nanos} nano-dollars")
PY
done
