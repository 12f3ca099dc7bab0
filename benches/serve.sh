#!/usr/bin/env bash
# orch serve's pages over a ledger of 10,000 runs: GET /runs, /runs?page=100, /runs?status=failed
# and /spend, timed with hyperfine (one invocation, the commands one after another, 20 runs each, 3 warm-ups)
# through curl, beside GET /assets/style.css (the server's and curl's own cost).
# Usage: benches/serve.sh [ORCH] [DIR] [RUNS]; DIR under /dev/shm (tmpfs, the default) or /tmp
# (disk). The ledger is seeded through orch's own API by examples/seed_history.rs.
set -euo pipefail
cd "$(dirname "$0")/.."
orch=${1:-target/release/orch}
work=${2:-$(mktemp -d /dev/shm/orch-serve-bench.XXXXXX)}
runs=${3:-10000}
if [ ! -e "$work/full/ledger.sqlite" ]; then
  cargo build --release --quiet --example seed_history
  target/release/examples/seed_history "$work/full" "$runs" 10
fi
"$orch" serve --bind 127.0.0.1:0 --state-dir "$work/full" > "$work/serve.out" &
pid=$!
trap 'kill $pid' EXIT
for _ in $(seq 100); do grep -q listening "$work/serve.out" 2>/dev/null && break; sleep 0.1; done
url=$(sed -n 's/.*listening on \(http:[^ ]*\)\/$/\1/p' "$work/serve.out")
hyperfine -N --runs 20 --warmup 3 \
  "curl -sf -o /dev/null $url/assets/style.css" \
  "curl -sf -o /dev/null $url/runs" \
  "curl -sf -o /dev/null $url/runs?page=100" \
  "curl -sf -o /dev/null $url/runs?status=failed" \
  "curl -sf -o /dev/null $url/spend"
