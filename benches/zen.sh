#!/usr/bin/env bash
# Stream accounting: the old Python tool (netra-zen 1.4.2) vs orch before/after and orch's floor,
# on the same 8 agents, in interleaved rounds (issue 16).
#
#   benches/zen.sh BEFORE_ORCH [AFTER_ORCH] [DIR] [rounds]
#
# Each agent is a replay program standing in for `claude`: it ignores its arguments and writes a
# ~5.5 MB stream-json transcript one line per write (`grep --line-buffered`, as the real CLI
# writes). The transcript is built from the real Claude Code fixture
# tests/fixtures/claude-code-2.1.331/tool-use-two-blocks-one-message.jsonl: its init line, then
# its assistant/user lines repeated with fresh message, tool-use and line ids, then its result
# line with the usage and cost scaled by the repetitions (the true totals of the whole stream).
# zen finds `claude` on PATH (it tries /opt/homebrew/bin, /usr/local/bin, ~/.local/bin and
# /usr/bin first: none may hold a `claude`); orch is given it with --claude-path.
# Each round runs, in turn: zen, the before binary, the after binary, and the after binary with
# ORCH_BENCH_FLOOR=1 (the same pipes drained into the same logs, never parsed or accounted).
# Whole process-tree CPU = user+sys of the tool and every child it waited for (getrusage
# RUSAGE_CHILDREN in a small Python wrapper, microsecond resolution); medians.
# DIR holds the state and the transcript: /dev/shm (tmpfs, the default) or a folder under /tmp.
# zen is installed into a scratch venv ($ZEN_VENV, default $TMPDIR/orch-zenbench-venv, reused
# if present; nothing of it is in the repository) and run with ZEN_TELEMETRY_DISABLED=1.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"
before="$(realpath "${1:?usage: benches/zen.sh BEFORE_ORCH [AFTER_ORCH] [DIR] [rounds]}")"
after="$(realpath "${2:-target/release/orch}")"
base="${3:-/dev/shm}"
rounds="${4:-7}"
venv="${ZEN_VENV:-${TMPDIR:-/tmp}/orch-zenbench-venv}"
if [ ! -x "$venv/bin/zen" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet netra-zen==1.4.2
fi
for p in /opt/homebrew/bin/claude /usr/local/bin/claude ~/.local/bin/claude /usr/bin/claude; do
  if [ -e "$p" ]; then echo "zen would run $p instead of the replay agent: move it away" >&2; exit 1; fi
done
work="$(mktemp -d "$base/orch-zenbench.XXXXXX")"
trap '[ -n "${KEEP:-}" ] || rm -rf "$work"' EXIT # KEEP=1 keeps the outputs
echo "state in $work ($(df --output=fstype "$work" | tail -1)), $rounds rounds"

python3 - "$repo/tests/fixtures/claude-code-2.1.331/tool-use-two-blocks-one-message.jsonl" \
  "$work/transcript.jsonl" "${STREAM_BYTES:-5500000}" <<'PY'
import json, re, sys, uuid
src, out, target = sys.argv[1], sys.argv[2], int(sys.argv[3])
lines = [json.loads(l) for l in open(src)]
init, body, result = lines[0], lines[1:-1], lines[-1]
size = lambda o: len(json.dumps(o, separators=(",", ":"))) + 1
per_rep = sum(size(o) for o in body)
reps = max(1, (target - size(init) - size(result)) // per_rep)
with open(out, "w") as f:
    w = lambda o: f.write(json.dumps(o, separators=(",", ":")) + "\n")
    w(init)
    text = "\n".join(json.dumps(o, separators=(",", ":")) for o in body)
    old = set(re.findall(r"\b(?:msg|toolu)_[0-9a-f]{12,}", text))
    old |= {o["uuid"] for o in body if "uuid" in o}
    for r in range(reps):
        t = text
        for o in old:
            t = t.replace(o, f"{o.split('_')[0]}_b{r:06d}{uuid.uuid4().hex[:16]}" if "_" in o
                          else str(uuid.uuid4()))
        f.write(t + "\n")
    def scale(d):
        for k, v in list(d.items()):
            if isinstance(v, dict):
                scale(v)
            elif k in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens",
                       "output_tokens", "ephemeral_1h_input_tokens", "ephemeral_5m_input_tokens",
                       "inputTokens", "outputTokens", "cacheReadInputTokens",
                       "cacheCreationInputTokens", "cacheCreationEphemeral5mInputTokens",
                       "cacheCreationEphemeral1hInputTokens", "num_turns"):
                d[k] = v * reps
            elif k in ("total_cost_usd", "costUSD"):
                d[k] = round(v * reps, 6)
    scale(result)
    w(result)
u = result["usage"]
print(f"transcript: {reps} repetitions of the fixture's turns, {reps*len(body)+2} lines; result: "
      f"input {u['input_tokens']}, output {u['output_tokens']}, cache write "
      f"{u['cache_creation_input_tokens']}, cache read {u['cache_read_input_tokens']}, "
      f"${result['total_cost_usd']}")
PY
ls -l "$work/transcript.jsonl" | awk '{printf "transcript: %.2f MB per agent\n", $5/1e6}'
mkdir -p "$work/bin" "$work/ws"
printf '#!/bin/sh\nexec grep --line-buffered "" %s\n' "$work/transcript.jsonl" > "$work/bin/claude"
chmod +x "$work/bin/claude"

# The same 8 agents for both tools.
python3 - "$work" <<'PY'
import json, sys
work = sys.argv[1]
json.dump({"instances": [{"name": f"a{i}", "command": "replay the transcript",
                          "permission_mode": "bypassPermissions", "output_format": "stream-json"}
                         for i in range(1, 9)]}, open(f"{work}/zen.json", "w"), indent=1)
with open(f"{work}/orch.toml", "w") as f:
    f.write('[settings]\nstartup_delay = "0s"\n\n')
    for i in range(1, 9):
        f.write(f'[jobs.a{i}]\nprompt = "replay the transcript"\n\n')
PY

timed() { # out-file command...: user, sys (of every child waited for: RUSAGE_CHILDREN), wall
  python3 -c '
import resource, subprocess, sys, time
r0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # a pyenv shim leaves its own children here
start = time.monotonic()
rc = subprocess.call(sys.argv[2:])
wall = time.monotonic() - start
r = resource.getrusage(resource.RUSAGE_CHILDREN)
open(sys.argv[1], "w").write(f"{r.ru_utime - r0.ru_utime:.4f} {r.ru_stime - r0.ru_stime:.4f} {wall:.3f}\n")
sys.exit(rc)' "$@"
}
one() { # name round
  local state="$work/state-$1-$2" t="$work/t-$1-$2"
  case "$1" in
    zen)
      (cd "$work/ws" && PATH="$work/bin:$PATH" ZEN_TELEMETRY_DISABLED=1 timed "$t" \
        "$venv/bin/zen" --config "$work/zen.json" --workspace "$work/ws" --startup-delay 0 \
        --max-console-lines 0 --quiet) > "$work/zen-out-$2" 2>&1 || true
      python3 - "$work/zen-out-$2" >> "$t" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
rows = re.findall(r"^\| (a\d)\s+\| (\w+)\s+\|[^|]*\| ([\d,]+)\s+\| ([\d,]+)\s+\| ([\d,]+)\s+\| ([\d,]+)\s+\| ([\d,]+)\s+\| (\d+)\s+\| \$([\d.]+)", text, re.M)
n = lambda s: int(s.replace(",", ""))
done = sum(1 for r in rows if r[1] == "completed")
tot = [sum(n(r[i]) for r in rows) for i in (2, 3, 4, 5, 6)]
usd = sum(float(r[8]) for r in rows)
print(f"{done} {tot[0]} {tot[1]} {tot[2]} {tot[3]} {tot[4]} {usd:.6f}")
PY
      ;;
    *)
      local bin="$after" floor=0
      [ "$1" = before ] && bin="$before"
      [ "$1" = floor ] && floor=1
      (cd "$work/ws" && ORCH_BENCH_FLOOR="$floor" timed "$t" "$bin" run "$work/orch.toml" \
        --claude-path "$work/bin/claude" --quiet --state-dir "$state") > "$work/$1-out-$2" 2>&1 || true
      python3 - "$state/ledger.sqlite" >> "$t" <<'PY'
import sqlite3, sys
print(sqlite3.connect(sys.argv[1]).execute("SELECT COUNT(*) FROM usage").fetchone()[0])
PY
      "$after" ledger --state-dir "$state" --format json > "$work/$1-ledger-$2" 2>&1 || true
      rm -rf "$state"
      ;;
  esac
}
for r in $(seq 1 "$rounds"); do
  for name in zen before after floor; do one "$name" "$r"; done
done
python3 - "$work" "$rounds" <<'PY'
import json, statistics, sys
work, rounds = sys.argv[1], int(sys.argv[2])
med = {}
for name in ("zen", "before", "after", "floor"):
    cpu, wall, extra = [], [], []
    for r in range(1, rounds + 1):
        lines = open(f"{work}/t-{name}-{r}").read().strip().split("\n")
        u, s, e = map(float, lines[-2].split()[-3:])
        cpu.append(u + s); wall.append(e); extra.append(lines[-1])
    med[name] = statistics.median(cpu)
    print(f"  {name:>6}: CPU {med[name]:.3f} s (min {min(cpu):.3f}, max {max(cpu):.3f}),"
          f" wall {statistics.median(wall):.2f} s", end="")
    if name == "zen":
        print(f"; completed, total tokens, input, output, cache write, cache read, USD (sum of the 8): {extra[-1]}")
    else:
        print(f"; usage rows {statistics.median(int(x) for x in extra):.0f}")
for name in ("before", "after"):
    try:
        runs = json.load(open(f"{work}/{name}-ledger-{rounds}"))
        print(f"  {name} ledger (last round): {json.dumps(runs)[:400]}")
    except Exception as e:
        print(f"  {name} ledger unreadable: {e}")
z, b, a, f = med["zen"], med["before"], med["after"], med["floor"]
print(f"  zen/before {z/b:.1f}x, zen/after {z/a:.1f}x, zen/floor {z/f:.1f}x;"
      f" before/floor {b/f:.2f}x, after/floor {a/f:.2f}x, before/after {b/a:.2f}x")
PY
