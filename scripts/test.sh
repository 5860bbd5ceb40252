#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#   lints (rustfmt, clippy), the psql session, the client libraries, every unit and
#   integration test with rows and vectors embedded, then the integration tests again
#   with rows in a real Cassandra 5 that scripts/dev-cassandra fetches (Maven) and
#   starts, and, where a Qdrant server is at hand (VECTORGATE_TEST_QDRANT_URL, or
#   ../shared/qdrant/start beside the clone), twice more with vectors in it: rows
#   embedded and rows in Cassandra. The summary gives each pass's counts.
# Builds go to target/ in the clone, as `cargo build` does, unless CARGO_TARGET_DIR is
# set (.ci/run sets it outside the clone so that later runs on the machine reuse them).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

# Each step says when it began: seconds since the start, so a slow step shows in CI's log.
step() { printf '\n==> %s   [%s, %ds in]\n' "$*" "$(date +%T)" "$SECONDS"; }

step "tools"
apt_install() {
    echo "installing $*"
    local sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "$@" >/dev/null
}
command -v psql >/dev/null 2>&1 || apt_install postgresql-client
command -v java >/dev/null 2>&1 || apt_install openjdk-17-jre-headless
command -v mvn >/dev/null 2>&1 || apt_install maven
command -v python3 >/dev/null 2>&1 || apt_install python3 python3-venv
cargo --version
psql --version
java -version 2>&1 | head -1

step "cargo fmt --all --check"
cargo fmt --check

step "cargo clippy -D warnings (the server and vectorgate-bench)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

step "build"
# The same build the tests use: a plain `cargo build` resolves dependency features
# without the dev-dependencies and would rebuild half the stack once more.
cargo test --no-run --quiet
cargo build --workspace --all-targets --quiet

step "psql session"
scripts/psql_session.sh "$CARGO_TARGET_DIR/debug/vectorgate"

logs="$(mktemp -d "${TMPDIR:-/tmp}/vectorgate-test.XXXXXX")"
status=0
passes=()

# One pass of cargo test: its name, then environment assignments, then cargo's args.
# Its counts go into the summary at the end.
run_pass() {
    local name="$1"; shift
    local env=()
    while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do env+=("$1"); shift; done
    shift
    step "cargo test ($name)"
    local log="$logs/pass${#passes[@]}.log" rc
    set +e
    env -u VECTORGATE_TEST_QDRANT_URL -u VECTORGATE_TEST_CASSANDRA "${env[@]}" \
        cargo test --no-fail-fast "$@" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    set -e
    passes+=("$name: $(count passed "$log") passed, $(count failed "$log") failed, $(count ignored "$log") ignored")
    [ "$status" -eq 0 ] && status=$rc
    return 0
}
count() { grep -Eo "[0-9]+ $1" "$2" | awk '{s+=$1} END {print s+0}'; }

step "client libraries (scripts/client-tests.sh)"
set +e
scripts/client-tests.sh "$CARGO_TARGET_DIR/debug/vectorgate"
client_status=$?
passes+=("client libraries, embedded: $([ "$client_status" -eq 0 ] && echo ok || echo FAILED)")
set -e

# The embedded pass stays embedded whatever the environment holds.
run_pass "rows and vectors embedded" --

step "Cassandra 5 (scripts/dev-cassandra)"
export CASSANDRA_PORT="${VECTORGATE_TEST_CASSANDRA_PORT:-19042}"
# Every test makes a keyspace of its own and the passes share one Cassandra: with a 1 GB
# heap its old generation filled by the last Cassandra pass (timeouts, OutOfMemoryError).
export CASSANDRA_HEAP="${CASSANDRA_HEAP:-2G}"
cleanup=("scripts/dev-cassandra stop")
on_exit() { for c in "${cleanup[@]}"; do $c >/dev/null 2>&1 || true; done; rm -rf "$logs"; }
trap on_exit EXIT
scripts/dev-cassandra wipe >/dev/null 2>&1 || true
scripts/dev-cassandra start
cassandra="127.0.0.1:$CASSANDRA_PORT"

run_pass "rows in Cassandra, vectors embedded" VECTORGATE_TEST_CASSANDRA="$cassandra" -- --test integration

# The applications' own programs (LangGraph, langchain-postgres, LlamaIndex) with their
# rows in Cassandra, as a user who moved off Postgres runs them.
step "client libraries, rows in Cassandra (scripts/client-tests.sh --cassandra)"
set +e
scripts/client-tests.sh "$CARGO_TARGET_DIR/debug/vectorgate" --cassandra "$cassandra"
cassandra_clients=$?
passes+=("client libraries, rows in Cassandra: $([ "$cassandra_clients" -eq 0 ] && echo ok || echo FAILED)")
[ "$client_status" -eq 0 ] && client_status=$cassandra_clients
set -e

# PostgreSQL 15 as the oracle: the sql/*.slt files marked `# oracle: postgres` run on it
# too, so that what they expect is Postgres' behaviour (Debian's postgresql-15).
step "PostgreSQL 15, the oracle for the marked sql/*.slt files"
pg_bin=/usr/lib/postgresql/15/bin
[ -x "$pg_bin/postgres" ] || apt_install postgresql-15 || true
if [ -x "$pg_bin/postgres" ]; then
    pg_dir="$(mktemp -d "${TMPDIR:-/tmp}/vectorgate-pg.XXXXXX")"
    pg_port="$(python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
    as_pg=""
    # Postgres will not run as root: as its own user, which its package makes.
    if [ "$(id -u)" -eq 0 ]; then chown postgres "$pg_dir"; as_pg="runuser -u postgres --"; fi
    # Byte order for text (as vectorgate sorts), whatever the machine's locale.
    $as_pg "$pg_bin/initdb" -D "$pg_dir/data" -U oracle --auth=trust --locale=C.UTF-8 --encoding=UTF8 >/dev/null
    $as_pg "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w \
        -o "-p $pg_port -k $pg_dir -c listen_addresses=127.0.0.1" start >/dev/null
    cleanup+=("$as_pg $pg_bin/pg_ctl -D $pg_dir/data -m immediate stop" "rm -rf $pg_dir")
    run_pass "marked sql/*.slt files on PostgreSQL 15, a pg_dump of it restored, COPY TO against it" \
        VECTORGATE_TEST_POSTGRES="postgres://oracle@127.0.0.1:$pg_port/postgres" \
        -- --test integration -- slt_files_marked_for_it_pass_on_postgres pg_dump copy_to_writes_what_postgres_writes
    run_pass "a pg_dump of PostgreSQL 15 restored, rows in Cassandra" \
        VECTORGATE_TEST_POSTGRES="postgres://oracle@127.0.0.1:$pg_port/postgres" \
        VECTORGATE_TEST_CASSANDRA="$cassandra" -- --test integration pg_dump
else
    echo "skipped: PostgreSQL 15 (postgresql-15) could not be installed"
    passes+=("marked sql/*.slt files on PostgreSQL 15: skipped (no postgresql-15)")
fi

# A Qdrant server: the one VECTORGATE_TEST_QDRANT_URL names, or the test build that
# ../shared/qdrant/start provides where it exists (never on a user's machine).
qdrant_url="${VECTORGATE_TEST_QDRANT_URL:-}"
qdrant_start="$(cd .. && pwd)/shared/qdrant/start"
if [ -z "$qdrant_url" ] && [ -x "$qdrant_start" ]; then
    step "Qdrant server (../shared/qdrant/start)"
    qdrant_dir="$(mktemp -d "${TMPDIR:-/tmp}/vectorgate-qdrant.XXXXXX")"
    read -r http grpc < <(python3 -c 'import socket
ss = [socket.socket() for _ in range(2)]
for s in ss: s.bind(("127.0.0.1", 0))
print(*[s.getsockname()[1] for s in ss])')
    # Qdrant leaves a marker file in its working directory: start it in its own.
    started="$(cd "$qdrant_dir" && "$qdrant_start" "$qdrant_dir" "$http" "$grpc")"
    echo "$started"
    qdrant_pid="$(echo "$started" | sed -n 's/.*pid=\([0-9]*\).*/\1/p')"
    cleanup+=("kill $qdrant_pid" "rm -rf $qdrant_dir")
    qdrant_url="http://127.0.0.1:$grpc"
fi
if [ -n "$qdrant_url" ]; then
    run_pass "vectors in the Qdrant server at $qdrant_url, rows embedded" \
        VECTORGATE_TEST_QDRANT_URL="$qdrant_url" -- --test integration
    run_pass "vectors in the Qdrant server at $qdrant_url, rows in Cassandra" \
        VECTORGATE_TEST_QDRANT_URL="$qdrant_url" VECTORGATE_TEST_CASSANDRA="$cassandra" -- --test integration
else
    echo
    echo "skipped: the passes against a Qdrant server (no ../shared/qdrant/start and no"
    echo "         VECTORGATE_TEST_QDRANT_URL=http://host:6334); the Qdrant-unreachable fallback"
    echo "         and the Qdrant request translation were tested above."
    passes+=("vectors in a Qdrant server: skipped (no Qdrant server)")
fi
[ "$status" -eq 0 ] && status=$client_status

step "benchmark smoke run (scripts/bench.sh --smoke: every path it measures, at 2,000 rows)"
set +e
bench_out="${TMPDIR:-/tmp}/vectorgate-bench-smoke.$$"
mkdir -p "$bench_out"
scripts/bench.sh --smoke --debug --no-plots --scale 2k --queries 20 \
  --cassandra "127.0.0.1:$CASSANDRA_PORT" --out "$bench_out/BENCHMARKS.md" --json "$bench_out/results.json" \
  >"$bench_out/log" 2>&1
bstatus=$?
set -e
if [ "$bstatus" -eq 0 ]; then
  echo "benchmark smoke run: ok ($(grep -c '^| ' "$bench_out/BENCHMARKS.md") table rows written)"
else
  echo "benchmark smoke run: FAILED"; tail -30 "$bench_out/log"
  [ "$status" -eq 0 ] && status=$bstatus
fi
if [ -n "$qdrant_url" ]; then
  set +e
  scripts/bench.sh --smoke --debug --scale 2k --queries 20 --qdrant "$qdrant_url" \
    --out "$bench_out/QDRANT.md" --json "$bench_out/qresults.json" >"$bench_out/qlog" 2>&1
  bstatus=$?
  set -e
  if [ "$bstatus" -eq 0 ]; then
    echo "benchmark smoke run, vectors in the Qdrant server: ok ($(grep -c '^| ' "$bench_out/QDRANT.md") table rows written)"
  else
    echo "benchmark smoke run, vectors in the Qdrant server: FAILED"; tail -30 "$bench_out/qlog"
    [ "$status" -eq 0 ] && status=$bstatus
  fi
fi
rm -rf "$bench_out"

echo
for p in "${passes[@]}"; do echo "pass: $p"; done
passed=0; failed=0
for f in "$logs"/pass*.log; do
    passed=$((passed + $(count passed "$f"))); failed=$((failed + $(count failed "$f")))
done
echo "${passed} passed, ${failed} failed, in ${SECONDS}s"
exit "$status"
