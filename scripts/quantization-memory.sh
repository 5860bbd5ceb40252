#!/usr/bin/env bash
# Vector memory with quantization none, int8 and binary in the embedded index: loads the
# same N clustered 384-d unit vectors into three tables through the proxy (COPY over
# psql), waits for the HNSW segments to be built, and compares the bytes of the stored
# originals with the bytes of the quantized copies that searches read.
# Usage: scripts/quantization-memory.sh [N] [path/to/vectorgate]   (default 20000, debug build)
set -euo pipefail
cd "$(dirname "$0")/.."
n="${1:-20000}"
bin="${2:-${CARGO_TARGET_DIR:-$HOME/.cache/vectorgate/target}/debug/vectorgate}"
dir="$(mktemp -d)"
trap 'kill "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
port=$((20000 + RANDOM % 20000))
"$bin" serve --listen "127.0.0.1:$port" --data "$dir/data" >"$dir/log" 2>&1 &
pid=$!
for _ in $(seq 100); do psql "postgres://q@127.0.0.1:$port/vectorgate" -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$n" >"$dir/rows.tsv" <<'PY'
import math, random, sys
random.seed(7)
n = int(sys.argv[1])
centers = [[random.gauss(0, 1) for _ in range(384)] for _ in range(50)]
for i in range(n):
    c = centers[i % 50]
    v = [x + 0.4 * random.gauss(0, 1) for x in c]
    norm = math.sqrt(sum(x * x for x in v))
    print(f"{i}\t[{','.join(f'{x / norm:.5f}' for x in v)}]")
PY
for q in none int8 binary; do
  psql -q "postgres://q@127.0.0.1:$port/vectorgate" \
    -c "CREATE TABLE q_$q (id bigint PRIMARY KEY, embedding vector(384)) WITH (quantization = '$q', always_ram = true)" \
    -c "\\copy q_$q FROM '$dir/rows.tsv'"
done
# Wait until every table's points are in indexed segments.
for _ in $(seq 600); do
  [ "$(grep -c "indexed=$n" "$dir/log" || true)" -ge 3 ] && break
  sleep 1
done
printf '%-8s %14s %16s %8s\n' quantization original_bytes quantized_bytes ratio
for q in none int8 binary; do
  d="$dir/data/vectors/q_$q"
  orig=$(find "$d" -path '*vector_storage*' -type f -not -path '*quant*' -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  quant=$(find "$d" -path '*quant*' -type f -printf '%s\n' | awk '{s+=$1} END {print s+0}')
  if [ "$quant" -gt 0 ]; then ratio=$(awk -v o="$orig" -v q="$quant" 'BEGIN {printf "%.1fx", o / q}'); else ratio="-"; fi
  printf '%-8s %14s %16s %8s\n' "$q" "$orig" "$quant" "$ratio"
done
