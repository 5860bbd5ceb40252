#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#   lints (rustfmt, clippy), the psql session, every unit and integration test with rows
#   in the embedded store, then the integration tests again with rows in a real
#   Cassandra 5 that scripts/dev-cassandra fetches (Maven) and starts.
# Builds go to target/ in the clone, as `cargo build` does, unless CARGO_TARGET_DIR is
# set (.ci/run sets it outside the clone so that later runs on the machine reuse them).
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

step() { printf '\n==> %s\n' "$*"; }

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

log="${TMPDIR:-/tmp}/vectorgate-test.$$.log"
: >"$log"

step "client libraries (scripts/client-tests.sh)"
set +e
scripts/client-tests.sh "$CARGO_TARGET_DIR/debug/vectorgate"
client_status=$?
set -e

step "cargo test (rows in the embedded store)"
set +e
cargo test --no-fail-fast 2>&1 | tee -a "$log"
status=${PIPESTATUS[0]}
set -e

step "Cassandra 5 (scripts/dev-cassandra)"
export CASSANDRA_PORT="${VECTORGATE_TEST_CASSANDRA_PORT:-19042}"
stop_cassandra() { scripts/dev-cassandra stop || true; }
trap stop_cassandra EXIT
scripts/dev-cassandra wipe >/dev/null 2>&1 || true
scripts/dev-cassandra start

step "cargo test (rows in Cassandra)"
set +e
VECTORGATE_TEST_CASSANDRA="127.0.0.1:$CASSANDRA_PORT" cargo test --no-fail-fast --test integration 2>&1 | tee -a "$log"
cstatus=${PIPESTATUS[0]}
set -e
[ "$status" -eq 0 ] && status=$cstatus
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
rm -rf "$bench_out"

if [ -n "${VECTORGATE_TEST_QDRANT_URL:-}" ]; then
  step "cargo test (vectors in the Qdrant server at $VECTORGATE_TEST_QDRANT_URL, rows in Cassandra)"
  set +e
  VECTORGATE_TEST_CASSANDRA="127.0.0.1:$CASSANDRA_PORT" cargo test --no-fail-fast --test integration 2>&1 | tee -a "$log"
  qstatus=${PIPESTATUS[0]}
  set -e
  [ "$status" -eq 0 ] && status=$qstatus
else
  echo
  echo "skipped: the suite against a Qdrant server (set VECTORGATE_TEST_QDRANT_URL=http://host:6334 to run it);"
  echo "         Qdrant-unreachable fallback and the Qdrant request translation were tested above."
fi

passed=$(grep -Eo '[0-9]+ passed' "$log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "$log" | awk '{s+=$1} END {print s+0}')
rm -f "$log"
echo
echo "${passed} passed, ${failed} failed"
exit "$status"
