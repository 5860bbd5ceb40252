#!/usr/bin/env bash
# Real Postgres client libraries against a fresh vectorgate (Python, JavaScript, Java, Go):
# installs them (pinned) under
# ~/.cache/vectorgate/clients, starts the server on a free port, runs each client's test
# program. Usage: scripts/client-tests.sh path/to/vectorgate [--cassandra HOST:PORT]
# (`--install-only`: only the Python virtualenv with psycopg and LangGraph, for the
# LangGraph benchmark. `--cassandra`: the server keeps its rows in that CQL cluster, in
# a keyspace of its own, and only the Python programs run.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: scripts/client-tests.sh path/to/vectorgate [--cassandra HOST:PORT]}"
cassandra=""
if [ "${2:-}" = --cassandra ]; then
  cassandra="${3:?--cassandra needs HOST:PORT}"
fi
cache="${VECTORGATE_CLIENTS_CACHE:-$HOME/.cache/vectorgate/clients}"
mkdir -p "$cache"

# Python: psycopg 3, psycopg2, SQLAlchemy 2, pgvector-python (numpy for its vectors),
# LangGraph's Postgres store and checkpointer, langchain-postgres, LlamaIndex's Postgres
# vector store; Django with pgvector.
python_deps="psycopg[binary]==3.3.9 psycopg2-binary==2.9.13 asyncpg==0.32.0 SQLAlchemy==2.1.9 pgvector==0.5.1 numpy==2.4.6 psycopg-pool==3.3.3 langgraph==1.2.24 langgraph-checkpoint-postgres==3.2.0"
# langchain-postgres and LlamaIndex pin other versions of SQLAlchemy and pgvector-python:
# each has a virtualenv of its own.
langchain_deps="langchain-postgres==0.0.19 langchain-core==1.8.3 psycopg[binary]==3.3.9"
llamaindex_deps="llama-index-vector-stores-postgres==0.9.0 llama-index-core==0.14.25"
django_deps="Django==5.2.19 pgvector==0.5.1 psycopg[binary]==3.3.9"
# Supabase's vecs: its README's `postgresql://` URL is psycopg2 under SQLAlchemy 2.0
# (2.1 takes it as psycopg 3, which vecs does not install).
vecs_deps="vecs==0.4.5 SQLAlchemy==2.0.58 pgvector==0.3.6 psycopg2-binary==2.9.13 flupy==1.2.5 Deprecated==1.2.18 numpy==2.4.6"

# A virtualenv under $cache with exactly these packages (pinned; reinstalled when they change).
python_env() {
  local venv="$cache/$1"
  shift
  if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
  fi
  if [ "$(cat "$venv/.deps" 2>/dev/null)" != "$*" ]; then
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@"
    echo "$*" >"$venv/.deps"
  fi
}
# shellcheck disable=SC2086
python_env venv $python_deps
[ "$bin" = --install-only ] && exit 0
# shellcheck disable=SC2086
python_env venv-langchain $langchain_deps
# shellcheck disable=SC2086
python_env venv-llamaindex $llamaindex_deps
# shellcheck disable=SC2086
python_env venv-django $django_deps
# shellcheck disable=SC2086
python_env venv-vecs $vecs_deps

# JavaScript: node-postgres and pgvector for Node.
node_deps="pg@8.23.1 pgvector@0.2.1"
mkdir -p "$cache/node"
if [ "$(cat "$cache/node/.deps" 2>/dev/null)" != "$node_deps" ]; then
  (cd "$cache/node" && { [ -f package.json ] || npm init -y >/dev/null; } &&
    # shellcheck disable=SC2086
    npm install --silent --no-audit --no-fund $node_deps >/dev/null 2>&1)
  echo "$node_deps" >"$cache/node/.deps"
fi

# Java: pgjdbc from Maven Central.
pgjdbc="org.postgresql:postgresql:42.7.14"
mkdir -p "$cache/java"
if [ ! -f "$cache/java/postgresql-42.7.14.jar" ]; then
  mvn -q dependency:copy -Dartifact="$pgjdbc" -DoutputDirectory="$cache/java" </dev/null
fi
rm -rf "$cache/java/classes"
javac -d "$cache/java/classes" clients/java/ClientTest.java

# Go: pgx v5 (go.mod pins it), built outside the source tree.
(cd clients/go && GOPATH="$cache/gopath" GOFLAGS=-mod=mod go build -o "$cache/go-client" .)
(cd examples/go && GOPATH="$cache/gopath" GOFLAGS=-mod=mod go build -o "$cache/go-example" .)

dir="$(mktemp -d)"
port=$((30000 + RANDOM % 20000))
rows=()
if [ -n "$cassandra" ]; then
  rows=(--scylla "$cassandra" --keyspace "vg_clients_$port")
fi
"$bin" serve --listen "127.0.0.1:$port" --data "$dir/data" "${rows[@]}" >"$dir/log" 2>&1 &
pid=$!
trap 'kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; rm -rf "$dir"' EXIT
url="postgresql://tester@127.0.0.1:$port/vectorgate"
for _ in $(seq 300); do
  "$cache/venv/bin/python" -c "import psycopg; psycopg.connect('$url').close()" 2>/dev/null && break
  sleep 0.2
done

status=0
# The Python programs: the drivers, SQLAlchemy and the applications' libraries, each
# "label|virtualenv|program".
python_programs=(
  "python clients|venv|clients/python/test_clients.py"
  "LangGraph's Postgres store and checkpointer|venv|clients/python/test_langgraph.py"
  "langchain-postgres' PGVector and PGVectorStore|venv-langchain|clients/python/test_langchain.py"
  "LlamaIndex's PGVectorStore and VectorStoreIndex|venv-llamaindex|clients/python/test_llamaindex.py"
  "Django with pgvector's VectorField|venv-django|clients/python/test_django.py"
  "Django's ArrayField|venv-django|clients/python/test_django_arrays.py"
  "Supabase's vecs|venv-vecs|clients/python/test_vecs.py"
)
applications() {
  local label venv program
  for entry in "${python_programs[@]}"; do
    IFS='|' read -r label venv program <<<"$entry"
    echo "-- $label${cassandra:+ (rows in Cassandra)}"
    VECTORGATE_URL="$url" "$cache/$venv/bin/python" "$program" || status=1
  done
}
# The examples a user copies (examples/), each reading DATABASE_URL, in a database of
# their own (the client programs made tables of the same names with other dimensions).
examples_url="postgresql://tester@127.0.0.1:$port/examples"
examples() {
  "$cache/venv/bin/python" -c "import psycopg; psycopg.connect('$url', autocommit=True).execute('CREATE DATABASE examples')"
  echo "-- example: agent memory with LangGraph's AsyncPostgresStore${cassandra:+ (rows in Cassandra)}"
  DATABASE_URL="$examples_url" "$cache/venv/bin/python" examples/python/agent_memory.py || status=1
  echo "-- example: RAG retrieval with langchain-postgres${cassandra:+ (rows in Cassandra)}"
  DATABASE_URL="$examples_url" "$cache/venv-langchain/bin/python" examples/python/rag_langchain.py || status=1
  [ -n "$cassandra" ] && return
  echo "-- example: pgvector for Node"
  DATABASE_URL="$examples_url" NODE_PATH="$cache/node/node_modules" node examples/node/index.js || status=1
  echo "-- example: pgx"
  DATABASE_URL="$examples_url" "$cache/go-example" || status=1
}
if [ -n "$cassandra" ]; then
  applications
  examples
  if [ "$status" -ne 0 ]; then
    echo "server log:"; tail -20 "$dir/log"
  fi
  exit "$status"
fi
applications
echo "-- node clients"
VECTORGATE_URL="$url" NODE_PATH="$cache/node/node_modules" node clients/node/test_clients.js || status=1
echo "-- java clients"
VECTORGATE_JDBC_URL="jdbc:postgresql://127.0.0.1:$port/vectorgate" \
  java -cp "$cache/java/classes:$cache/java/postgresql-42.7.14.jar" ClientTest || status=1
echo "-- go clients"
VECTORGATE_URL="$url" "$cache/go-client" || status=1
examples
if [ "$status" -ne 0 ]; then
  echo "server log:"; tail -20 "$dir/log"
fi
exit "$status"
