"""Two vectorgate builds side by side on prepared queries that are not searches, as ORMs
send them.

    python bench/prepared_query_ab.py OLD_BIN NEW_BIN [--rounds 3] [--queries 1000]

Run with an interpreter that has psycopg (`scripts/client-tests.sh`'s venvs do). Loads,
through the first build, a one-row table shaped like LangChain's collection table (a
name, a jsonb, a uuid) and a 1,000-row table; then the builds take turns serving that
directory (`bench/take_turns.py`). Each statement is sent the way SQLAlchemy on psycopg
sends it: the parameters cast (`$1::VARCHAR`, `LIMIT $2::INTEGER`), parsed anew at
each execution (psycopg's unnamed statements), the same values every time; `--queries`
executions after 50 untimed. Prints each statement's p50 per build and round, and the
medians over the rounds after the first.
"""

import argparse
import os
import statistics
import sys
import time

import psycopg

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from take_turns import print_medians, print_round, take_turns  # noqa: E402

STATEMENTS = {
    # LangChain's lookup of its collection before every search.
    "collection by name": (
        "SELECT c.name, c.cmetadata, c.uuid FROM collection c "
        "WHERE c.name = %s::VARCHAR LIMIT %s::INTEGER",
        ("bench", 1),
    ),
    # An ORM's filtered, ordered page.
    "filtered page": (
        "SELECT i.id, i.title FROM items i WHERE i.kind = %s::INTEGER "
        "ORDER BY i.id LIMIT %s::INTEGER",
        (3, 20),
    ),
    # A join with an aggregate.
    "join and count": (
        "SELECT c.name, count(*) FROM items i JOIN collection c ON i.kind = %s::INTEGER "
        "WHERE c.name = %s::VARCHAR GROUP BY c.name",
        (3, "bench"),
    ),
}


def load(url):
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE collection (uuid uuid PRIMARY KEY, name varchar, cmetadata jsonb)")
        c.execute("INSERT INTO collection VALUES (gen_random_uuid(), 'bench', '{\"a\": 1}')")
        c.execute("CREATE TABLE items (id bigint PRIMARY KEY, kind int, title text)")
        with c.cursor().copy("COPY items FROM STDIN") as cp:
            for i in range(1000):
                cp.write_row((i, i % 10, f"title {i}"))


def measure(queries):
    def run(url, _metrics_port):
        out = {}
        with psycopg.connect(url, autocommit=True, prepare_threshold=None) as c:
            for name, (sql, args) in STATEMENTS.items():
                for _ in range(50):
                    c.execute(sql, args).fetchall()
                times = []
                for _ in range(queries):
                    t = time.perf_counter()
                    c.execute(sql, args).fetchall()
                    times.append((time.perf_counter() - t) * 1000)
                out[name] = statistics.median(times)
        return out
    return run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=1000)
    a = ap.parse_args()
    results = take_turns(a.old, a.new, a.rounds, load, measure(a.queries), print_round,
                         "vectorgate-prepared-ab.")
    print_medians(results, list(STATEMENTS), a.rounds)


if __name__ == "__main__":
    main()
