#!/usr/bin/env bash
# The whole test suite, from a fresh clone on a fresh machine:
#   lints (rustfmt, clippy), the psql session, then every unit and integration test.
# Build products go outside the clone so that later runs on the same machine reuse them.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/vectorgate/target}"
export CARGO_TERM_COLOR=never
export RUST_BACKTRACE="${RUST_BACKTRACE:-0}"

step() { printf '\n==> %s\n' "$*"; }

step "tools"
if ! command -v psql >/dev/null 2>&1; then
    echo "installing the psql client (postgresql-client)"
    if [ "$(id -u)" -eq 0 ]; then
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
    else
        sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql-client >/dev/null
    fi
fi
cargo --version
psql --version

step "cargo fmt --check"
cargo fmt --check

step "cargo clippy -D warnings"
cargo clippy --all-targets --quiet -- -D warnings

step "build"
cargo build --quiet --bin vectorgate

step "psql session"
scripts/psql_session.sh "$CARGO_TARGET_DIR/debug/vectorgate"

step "cargo test"
cargo test --no-fail-fast 2>&1 | tee "${TMPDIR:-/tmp}/vectorgate-test.log"
status=${PIPESTATUS[0]}
passed=$(grep -Eo '[0-9]+ passed' "${TMPDIR:-/tmp}/vectorgate-test.log" | awk '{s+=$1} END {print s+0}')
failed=$(grep -Eo '[0-9]+ failed' "${TMPDIR:-/tmp}/vectorgate-test.log" | awk '{s+=$1} END {print s+0}')
echo
echo "${passed} passed, ${failed} failed"
exit "$status"
