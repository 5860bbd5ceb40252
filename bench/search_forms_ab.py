"""Two vectorgate builds side by side on the spellings of one prepared search.

    python bench/search_forms_ab.py OLD_BIN NEW_BIN [--rows 10000] [--rounds 3] [--queries 300]

Loads one data directory through the first build (a table `items (id bigint PRIMARY
KEY, title text, category int, year int, embedding vector(384))`, uniform random
vectors, by COPY), then the builds take turns serving that same directory, round by
round; each server answers every spelling `--queries` times over one psycopg
connection (prepared, the vector a binary pgvector parameter, binary results), after 10
untimed searches, and is stopped. Prints each spelling's p50 per build and round, and
the medians over the rounds after the first.
"""

import argparse
import os
import random
import statistics
import sys
import time

import numpy as np
import psycopg
from pgvector.psycopg import register_vector

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from take_turns import print_medians, print_round, take_turns  # noqa: E402

SPELLINGS = {
    "vector_search": "SELECT id, distance FROM vector_search('items', %s, 10)",
    "ORDER BY <=> LIMIT": "SELECT id FROM items ORDER BY embedding <=> %s LIMIT 10",
    "WHERE + ORDER BY <=> LIMIT": "SELECT id FROM items WHERE category = 3 ORDER BY embedding <=> %s LIMIT 10",
}


def load(url, rows):
    rnd = random.Random(1)
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE TABLE items (id bigint PRIMARY KEY, title text, category int, "
                  "year int, embedding vector(384))")
        with c.cursor().copy("COPY items FROM STDIN") as cp:
            for i in range(rows):
                v = "[" + ",".join("%.4f" % rnd.random() for _ in range(384)) + "]"
                cp.write_row((i, f"t{i}", i % 100, 2000 + i % 25, v))


def measure(url, queries):
    """Each spelling's p50 in ms over `queries` searches on one connection."""
    out = {}
    with psycopg.connect(url, autocommit=True) as c:
        register_vector(c)
        rnd = np.random.default_rng(3)
        qs = [rnd.random(384, dtype=np.float32) for _ in range(queries)]
        for name, sql in SPELLINGS.items():
            for q in qs[:10]:
                c.execute(sql, (q,), prepare=True, binary=True).fetchall()
            times = []
            for q in qs:
                t = time.perf_counter()
                c.execute(sql, (q,), prepare=True, binary=True).fetchall()
                times.append((time.perf_counter() - t) * 1000)
            out[name] = statistics.median(times)
    return out


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--rows", type=int, default=10000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--queries", type=int, default=300)
    args = p.parse_args()
    results = take_turns(
        args.old, args.new, args.rounds,
        load=lambda url: load(url, args.rows),
        measure=lambda url, _metrics: measure(url, args.queries),
        report=print_round,
        prefix="vectorgate-search-forms.",
    )
    print_medians(results, SPELLINGS, args.rounds)


if __name__ == "__main__":
    main()
