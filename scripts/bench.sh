#!/usr/bin/env bash
# The benchmarks, side by side in one run (see BENCHMARKS.md and bench/):
#   scripts/bench.sh [--scale 10k|100k|1m] [--queries N] [--no-cassandra] [--no-plots]
#                    [--debug] [--statements] [any other vectorgate-bench flag]
# Builds the server and vectorgate-bench in release mode (--debug: the test build, for
# the CI smoke run), starts a Cassandra 5 for the SAI comparison (scripts/dev-cassandra,
# CQL port BENCH_CASSANDRA_PORT, default 19342, heap CASSANDRA_HEAP, default 3G) unless
# --no-cassandra or --cassandra HOST:PORT is given, fetches scikit-learn's digits and
# matplotlib into a venv for the real data set and the plots unless --no-plots, runs
# the benchmark and writes BENCHMARKS.md, bench/results/results.json and the PNG plots.
# --qdrant-server measures only the section with vectors in a Qdrant server (beside direct
# qdrant-client calls and the embedded index): the one --qdrant URL names, or one that
# ../shared/qdrant/start starts where it exists (skipped, saying so, otherwise).
# --statements measures only the per-statement section, next to a PostgreSQL 15 that it
# starts on loopback (port BENCH_POSTGRES_PORT, default 15432) from Debian's
# postgresql-15 package, installed if missing.
# --ingest measures only the ingest section: one COPY per size up to --scale into the
# embedded stores, Cassandra, and Cassandra with a Qdrant server (when ../shared/qdrant
# exists), beside Cassandra's and Qdrant's own load rates of the same rows.
# --jsonb measures only the section of searches filtered on a jsonb column beside the
# same filters on ordinary columns (--jsonb-rows, default 100000; embedded stores).
# --langgraph measures only LangGraph's store (bench/langgraph_store.py: aput and
# asearch(query, filter)) at 10000 and 100000 memories (--langgraph-sizes "N M" to
# change), on the embedded stores, with rows in Cassandra, and on PostgreSQL 15 without
# vector search, and writes its section of BENCHMARKS.md.
# Builds go to target/ in the clone, as `cargo build` does, unless CARGO_TARGET_DIR is set.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/vectorgate"
command="scripts/bench.sh $*"

profile=release cassandra=start plots=yes postgres=no qdrant=no langgraph=no
langgraph_sizes="10000 100000"
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --debug) profile=debug ;;
    --qdrant-server) qdrant=start plots=no cassandra=none ;;
    --qdrant) qdrant=given plots=no cassandra=none; args+=("$1" "$2"); shift ;;
    --statements) postgres=start plots=no; args+=("$1") ;;
    --jsonb) plots=no cassandra=none; args+=("$1") ;;
    --ingest) plots=no qdrant=optional; args+=("$1") ;;
    --langgraph) langgraph=yes postgres=start plots=no ;;
    --langgraph-sizes) langgraph_sizes="$2"; shift ;;
    --no-cassandra) cassandra=none ;;
    --no-plots) plots=no ;;
    --cassandra) cassandra=given cass_addr="$2"; args+=("$1" "$2"); shift ;;
    *) args+=("$1") ;;
  esac
  shift
done

if [ "$langgraph" = yes ]; then
  [ "$profile" = release ] && cargo build --release -p vectorgate
  [ "$profile" = debug ] && cargo build -p vectorgate --bin vectorgate --quiet
  # LangGraph and its driver, as the client tests install them.
  scripts/client-tests.sh --install-only
elif [ "$profile" = release ]; then
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

cleanup=()
on_exit() { for c in "${cleanup[@]}"; do eval "$c" || true; done; }
trap on_exit EXIT

if [ "$postgres" = start ]; then
  pgbin=/usr/lib/postgresql/15/bin
  if [ ! -x "$pgbin/postgres" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq postgresql-15 >/dev/null
  fi
  pgdir="$(mktemp -d "${TMPDIR:-/tmp}/vectorgate-bench-pg.XXXXXX")"
  pgport="${BENCH_POSTGRES_PORT:-15432}"
  as=()
  # PostgreSQL refuses to run as root.
  if [ "$(id -u)" -eq 0 ]; then chown postgres "$pgdir"; as=(runuser -u postgres --); fi
  "${as[@]}" "$pgbin/initdb" -D "$pgdir/data" -A trust -U bench >/dev/null
  "${as[@]}" "$pgbin/pg_ctl" -D "$pgdir/data" -l "$pgdir/log" -w \
    -o "-p $pgport -k $pgdir -c listen_addresses=127.0.0.1" start >/dev/null
  cleanup+=("${as[*]} $pgbin/pg_ctl -D $pgdir/data -m fast stop >/dev/null; rm -rf $pgdir")
  args+=(--postgres "postgres://bench@127.0.0.1:$pgport/postgres")
fi

qstart="$(cd .. && pwd)/shared/qdrant/start"
if [ "$qdrant" = optional ]; then
  if [ -x "$qstart" ]; then qdrant=start; else
    echo "no Qdrant server (../shared/qdrant/start is absent): the ingest section runs without one"
  fi
fi
if [ "$qdrant" = start ]; then
  # The Qdrant server build provided beside the clone for tests; a user passes --qdrant URL.
  if [ ! -x "$qstart" ]; then
    echo "skipped: no Qdrant server (../shared/qdrant/start is absent; pass --qdrant http://host:6334)"
    exit 0
  fi
  qdir="$(mktemp -d "${TMPDIR:-/tmp}/vectorgate-bench-qdrant.XXXXXX")"
  read -r qhttp qgrpc < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
  started="$(cd "$qdir" && "$qstart" "$qdir" "$qhttp" "$qgrpc")"
  cleanup+=("kill $(echo "$started" | sed -n 's/.*pid=\([0-9]*\).*/\1/p'); rm -rf $qdir")
  args+=(--qdrant "http://127.0.0.1:$qgrpc")
fi

if [ "$cassandra" = start ]; then
  export CASSANDRA_PORT="${BENCH_CASSANDRA_PORT:-19342}" CASSANDRA_HEAP="${CASSANDRA_HEAP:-3G}"
  cleanup+=("scripts/dev-cassandra stop")
  scripts/dev-cassandra wipe >/dev/null 2>&1 || true
  scripts/dev-cassandra start
  cass_addr="127.0.0.1:$CASSANDRA_PORT"
  args+=(--cassandra "$cass_addr")
fi

if [ "$langgraph" = yes ]; then
  # Every run's figures are kept; the section shows the newest of each store and size.
  rows=bench/results/langgraph.jsonl
  run_store() { # label, url, memories, extra flags
    # 300 searches timed, 100 at 100000 memories and more (each may read every row).
    "$cache/clients/venv/bin/python" bench/langgraph_store.py --url "$2" --memories "$3" \
      --searches "$(( $3 >= 100000 ? 100 : 300 ))" --label "$1" --command "$command" \
      "${@:4}" >>"$rows"
  }
  serve() { # data dir, port, extra flags
    "$CARGO_TARGET_DIR/$profile/vectorgate" serve --listen "127.0.0.1:$2" --data "$1" "${@:3}" \
      >"$1.log" 2>&1 &
    echo $!
    for _ in $(seq 100); do
      "$cache/clients/venv/bin/python" -c "import psycopg; psycopg.connect('postgresql://bench@127.0.0.1:$2/vectorgate').close()" 2>/dev/null && return
      sleep 0.5
    done
  }
  work="$(mktemp -d "${TMPDIR:-/tmp}/vectorgate-bench-langgraph.XXXXXX")"
  cleanup+=("rm -rf $work")
  for n in $langgraph_sizes; do
    pid="$(serve "$work/embedded-$n" 15611)"
    run_store "vectorgate, embedded stores" "postgresql://bench@127.0.0.1:15611/vectorgate" "$n"
    kill "$pid"; wait "$pid" 2>/dev/null || true
    if [ "$cassandra" != none ]; then
      pid="$(serve "$work/cassandra-$n" 15612 --scylla "$cass_addr" --keyspace "langgraph_$n")"
      run_store "vectorgate, rows in Cassandra" "postgresql://bench@127.0.0.1:15612/vectorgate" "$n"
      kill "$pid"; wait "$pid" 2>/dev/null || true
    fi
    psql_url="postgresql://bench@127.0.0.1:$pgport/postgres"
    "$cache/clients/venv/bin/python" -c "import psycopg
c = psycopg.connect('$psql_url', autocommit=True)
for t in ('store_vectors', 'store', 'store_migrations', 'vector_migrations'):
    c.execute(f'DROP TABLE IF EXISTS {t} CASCADE')"
    run_store "PostgreSQL 15 (no pgvector)" "$psql_url" "$n" --no-vectors
  done
  "$cache/clients/venv/bin/python" bench/langgraph_store.py --write-section BENCHMARKS.md \
    --rows "$rows" --command "$command"
  exit 0
fi

"$bin" --command "$command" "${args[@]}"

if [ "$plots" = yes ]; then
  "$venv/bin/python" bench/plot.py plots bench/results/results.json bench/results
fi
