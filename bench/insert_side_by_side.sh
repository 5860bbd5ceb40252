#!/usr/bin/env bash
# Two vectorgate builds side by side on bulk INSERT: alternating, ROUNDS rounds of ROWS rows,
# each on a fresh server, in the simple and the extended protocol; prints rows/s and the
# server's CPU seconds per run. Usage: bench/insert_side_by_side.sh OLD_BIN NEW_BIN [ROUNDS] [ROWS]
set -euo pipefail
cd "$(dirname "$0")/.."
old="${1:?usage: insert_side_by_side.sh OLD_BIN NEW_BIN [ROUNDS] [ROWS]}"
new="${2:?usage: insert_side_by_side.sh OLD_BIN NEW_BIN [ROUNDS] [ROWS]}"
rounds="${3:-5}"
rows="${4:-10000}"
port=$((30000 + RANDOM % 20000))
cpu() { awk '{print $14+$15}' "/proc/$1/stat"; }
for round in $(seq 1 "$rounds"); do
  for which in old new; do
    bin=$old
    [ "$which" = new ] && bin=$new
    dir="$(mktemp -d)"
    "$bin" serve --listen "127.0.0.1:$port" --data "$dir/data" >"$dir/log" 2>&1 &
    pid=$!
    sleep 2
    for proto in simple ext; do
      t0=$(cpu "$pid")
      rate=$(node bench/insert_rate.js "$port" "$rows" "$proto")
      t1=$(cpu "$pid")
      echo "round $round $which $proto $rate cpu $(awk "BEGIN {print ($t1 - $t0) / 100}") s"
    done
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    rm -rf "$dir"
  done
done
