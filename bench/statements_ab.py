"""Per-statement medians of a few servers side by side, from one libpq client (psycopg).

    python bench/statements_ab.py SHAPE N ROUNDS URL [URL ...]

SHAPE is floor (`SELECT $1::int`), lookup (a key lookup), update (a single-row UPDATE)
or insert (a single-row INSERT with a 384-d vector). Every URL's database must hold
`stmt_bench (id bigint PRIMARY KEY, title text, category text, year int, embedding
vector(384))` with ids 0..9999 (`scripts/bench.sh --statements` builds the same table).
The servers take turns, N statements each per round, each statement prepared once;
prints each server's p50 and p90 in ms. Run it under `taskset -c 0`, with the servers
pinned the same way (`taskset -a -p -c 0 PID`), to compare the servers' own work without
the placement of their threads against the client's on the CPUs (see BENCHMARKS.md).
"""

import random
import sys
import time

import psycopg


def vector_text(rng):
    v = [rng.gauss(0, 1) for _ in range(384)]
    norm = sum(x * x for x in v) ** 0.5
    return "[" + ",".join("%g" % (x / norm) for x in v) + "]"


def main():
    shape, n, rounds, urls = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
    rng = random.Random(7)
    conns = [psycopg.connect(u, autocommit=True) for u in urls]
    vectors = [vector_text(rng) for _ in range(20)]
    next_id = [10_000_000 + int(time.time()) % 100_000 * 100 for _ in urls]
    latencies = [[] for _ in urls]
    for _ in range(rounds):
        for j, conn in enumerate(conns):
            cur = conn.cursor()
            for i in range(n):
                started = time.perf_counter()
                if shape == "floor":
                    cur.execute("SELECT %s::int", (i,), prepare=True)
                    assert cur.fetchone()[0] == i
                elif shape == "lookup":
                    key = rng.randrange(10_000)
                    cur.execute(
                        "SELECT id, title, category, year FROM stmt_bench WHERE id = %s",
                        (key,),
                        prepare=True,
                    )
                    assert cur.fetchone()[0] == key
                elif shape == "update":
                    cur.execute(
                        "UPDATE stmt_bench SET year = %s WHERE id = %s",
                        (1900 + i % 100, rng.randrange(10_000)),
                        prepare=True,
                    )
                    assert cur.rowcount == 1
                elif shape == "insert":
                    next_id[j] += 1
                    cur.execute(
                        "INSERT INTO stmt_bench (id, title, category, year, embedding) "
                        "VALUES (%s, %s, %s, %s, %s)",
                        (next_id[j], "doc", "cat", 2000, vectors[i % 20]),
                        prepare=True,
                    )
                    assert cur.rowcount == 1
                else:
                    sys.exit(f"unknown shape {shape}")
                latencies[j].append(time.perf_counter() - started)
    for url, lat in zip(urls, latencies):
        lat.sort()
        print(
            f"{shape} {url.rsplit('@', 1)[-1]} p50 {lat[len(lat) // 2] * 1000:.3f} ms"
            f"  p90 {lat[len(lat) * 9 // 10] * 1000:.3f} ms"
        )


if __name__ == "__main__":
    main()
