#!/usr/bin/env bash
# The benchmarks, side by side in one run (see BENCHMARKS.md and bench/):
#   scripts/bench.sh [--scale 10k|100k|1m] [--queries N] [--no-cassandra] [--no-plots]
#                    [--debug] [any other vectorgate-bench flag]
# Builds the server and vectorgate-bench in release mode (--debug: the test build, for
# the CI smoke run), starts a Cassandra 5 for the SAI comparison (scripts/dev-cassandra,
# CQL port BENCH_CASSANDRA_PORT, default 19342, heap CASSANDRA_HEAP, default 3G) unless
# --no-cassandra or --cassandra HOST:PORT is given, fetches scikit-learn's digits and
# matplotlib into a venv for the real data set and the plots unless --no-plots, runs
# the benchmark and writes BENCHMARKS.md, bench/results/results.json and the PNG plots.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vectorgate/target}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vectorgate"
command="scripts/bench.sh $*"

profile=release cassandra=start plots=yes
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --no-cassandra) cassandra=none ;;
    --no-plots) plots=no ;;
    --cassandra) cassandra=given; args+=("$1" "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done

if [ "$profile" = release ]; then
  cargo build --release -p vectorgate -p vectorgate-bench
else
  # The same features as the test build, so CI reuses it.
  cargo build --workspace --all-targets --quiet
fi
bin="$CARGO_TARGET_DIR/$profile/vectorgate-bench"

if [ "$plots" = yes ]; then
  venv="$cache/bench-venv"
  if ! "$venv/bin/python" -c 'import matplotlib, sklearn' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet matplotlib==3.11.2 scikit-learn==1.9.1
  fi
  mkdir -p "$cache/bench"
  [ -s "$cache/bench/digits.tsv" ] || "$venv/bin/python" bench/plot.py digits "$cache/bench/digits.tsv"
  args+=(--digits "$cache/bench/digits.tsv" --plots bench/results)
fi

if [ "$cassandra" = start ]; then
  export CASSANDRA_PORT="${BENCH_CASSANDRA_PORT:-19342}" CASSANDRA_HEAP="${CASSANDRA_HEAP:-3G}"
  trap 'scripts/dev-cassandra stop || true' EXIT
  scripts/dev-cassandra wipe >/dev/null 2>&1 || true
  scripts/dev-cassandra start
  args+=(--cassandra "127.0.0.1:$CASSANDRA_PORT")
fi

"$bin" --command "$command" "${args[@]}"

if [ "$plots" = yes ]; then
  "$venv/bin/python" bench/plot.py plots bench/results/results.json bench/results
fi
