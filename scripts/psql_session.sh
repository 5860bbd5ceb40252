#!/usr/bin/env bash
# Run sql/psql_session.sql through psql against a fresh server and check what psql
# printed, the way a person at the prompt would see it.
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:?usage: psql_session.sh PATH-TO-vectorgate}"
data="$(mktemp -d)"
log="$data/server.log"
"$bin" serve --listen 127.0.0.1:0 --data "$data/d" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$data"' EXIT
addr=""
for _ in $(seq 1 200); do
    addr=$(grep -o 'listen=[0-9.:]*' "$log" | head -1 | cut -d= -f2 || true)
    [ -n "$addr" ] && break
    sleep 0.1
done
[ -n "$addr" ] || { echo "server did not start"; cat "$log"; exit 1; }
host=${addr%:*}
port=${addr##*:}
out="$data/out.txt"
PGCONNECT_TIMEOUT=10 psql -X -h "$host" -p "$port" -U tester -d vectorgate -v ON_ERROR_STOP=0 \
    -f sql/psql_session.sql >"$out" 2>&1 || true
cat "$out"

fail=0
expect() {
    if ! grep -qF -- "$1" "$out"; then
        echo "psql session: expected to see: $1"
        fail=1
    fi
}
reject() {
    if grep -qF -- "$1" "$out"; then
        echo "psql session: did not expect: $1"
        fail=1
    fi
}
expect "CREATE TABLE"
expect "INSERT 0 3"
# the nearest 'ml' rows from 2020 on, nearest first
expect "  1 | intro |                  0"
expect "  3 | nets  | 0.0369131753138463"
expect "(2 rows)"
# \dt lists the table, \d describes its columns
expect " public | docs | table"
expect 'Table "public.docs"'
expect " id        | bigint"
expect " year      | integer"
expect " tags      | text[]"
expect " embedding | vector(3)"
expect '"docs_pkey" PRIMARY KEY, btree (id)'
expect "| Storage  | Compression |"
# errors keep the session going, with the right SQLSTATE (VERBOSITY verbose)
expect "ERROR:  42P01: relation \"missing\" does not exist"
expect "ERROR:  22000: expected 3 dimensions, not 2"
expect "(1 row)"
# the catalog commands print their listings
expect "List of databases"
expect "List of schemas"
expect "List of functions"
expect "List of operators"
expect "List of roles"
expect " postgres  | Superuser"
expect "List of tablespaces"
expect "List of installed extensions"
expect "List of data types"
# pgvector's types, each on its own line (the column is as wide as the longest name).
expect " public | vector    |"
expect " public | halfvec   |"
expect " public | sparsevec |"
expect "Access privileges"
expect " public | docs | table |"
expect "Object descriptions"
expect "List of languages"
expect "-[ RECORD 1 ]"
expect "title | intro"
expect " ?column? | ?column? "
expect "Time: "
expect " t         | bigint"
# \d of tables with UNIQUE, CHECK and FOREIGN KEY constraints, as PostgreSQL 15 prints it
expect '"parent_email_key" UNIQUE CONSTRAINT, btree (email)'
expect 'Check constraints:'
expect '"parent_n_check" CHECK (n > 0)'
expect 'Referenced by:'
expect 'TABLE "child" CONSTRAINT "child_pid_fkey" FOREIGN KEY (pid) REFERENCES parent(id) ON DELETE CASCADE'
expect 'TABLE "child" CONSTRAINT "cpe" FOREIGN KEY (pe) REFERENCES parent(email) ON DELETE SET NULL'
expect 'Foreign-key constraints:'
expect '"child_note_check" CHECK (length(note) < 10)'
expect '"cpe" FOREIGN KEY (pe) REFERENCES parent(email) ON DELETE SET NULL'
# A schema's table (\dn, \dt app.*, \d app.items)
expect " app    | "
expect " app    | items | table |"
expect 'Table "app.items"'
expect "nextval('app.items_id_seq'::regclass)"
expect " e      | vector(2)"
expect '"items_pkey" PRIMARY KEY, btree (id)'
expect '"items_name_key" UNIQUE CONSTRAINT, btree (name)'
# A table without a primary key (\d as PostgreSQL 15 prints it: no key, no ctid)
expect 'Table "public.nokey"'
expect " note   | text    |"
expect " 1 | first"
reject "ctid"
reject "nokey_pkey"
reject "information_schema | columns"
reject "Invalid function"
reject "server closed the connection"
reject "FATAL"
# Tab completion: psql's own catalog queries, through readline on a pseudo-terminal.
python3 scripts/psql_completion.py "$host" "$port" || fail=1
if [ "$fail" -ne 0 ]; then
    echo "psql session: FAILED"
    exit 1
fi
echo "psql session: ok"
