"""Two vectorgate builds side by side on LangGraph's asearch(query, filter).

    python bench/langgraph_ab.py OLD_BIN NEW_BIN [--memories 10000] [--rounds 3] [--searches 100]

Loads one data directory with N memories through the first build (as
bench/langgraph_store.py loads them), then the builds take turns serving that same
directory, round by round: each server is started on it, answers 10 untimed searches,
then `--searches` timed `asearch(("users",), query=..., filter={"kind": k}, limit=10)`
(the same queries for both), and is stopped. Prints each build's p50 per round and over
all rounds, and how many vector index searches and row-store reads each asearch made
(the server's /metrics).
"""

import argparse
import asyncio
import os
import random
import statistics
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from langgraph_store import make_embed, namespace_of, text_of, value_of  # noqa: E402

from langgraph.store.base import PutOp  # noqa: E402
from langgraph.store.postgres.aio import AsyncPostgresStore  # noqa: E402
from take_turns import take_turns  # noqa: E402


def index_config(dims):
    return {"dims": dims, "embed": make_embed(dims), "fields": ["text"]}


def counters(metrics):
    """(index searches, row-store gets) so far, from /metrics."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics}/metrics", timeout=5).read().decode()
    def count(store, op):
        total = 0.0
        for line in text.splitlines():
            if line.startswith("vectorgate_backend_duration_seconds_count") and f'store="{store}"' in line \
                    and f'op="{op}"' in line:
                total += float(line.rsplit(" ", 1)[1])
        return total
    return count("vector_index", "search"), count("row_store", "get")


async def load(url, memories, dims, batch=200):
    async with AsyncPostgresStore.from_conn_string(url, index=index_config(dims)) as store:
        await store.setup()
        for start_ in range(0, memories, batch):
            ops = [PutOp(namespace_of(i), f"m{i}", value_of(i))
                   for i in range(start_, min(memories, start_ + batch))]
            await store.abatch(ops)


async def searches(url, memories, dims, n, seed):
    async with AsyncPostgresStore.from_conn_string(url, index=index_config(dims)) as store:
        r = random.Random(seed)
        for _ in range(10):
            await store.asearch(("users",), query=text_of(r.randrange(memories)),
                                filter={"kind": r.randrange(10)}, limit=10)
        r = random.Random(seed + 1)
        times = []
        for _ in range(n):
            kind = r.randrange(10)
            q = text_of(r.randrange(memories))
            t = time.perf_counter()
            hits = await store.asearch(("users",), query=q, filter={"kind": kind}, limit=10)
            times.append((time.perf_counter() - t) * 1000)
            if len(hits) != 10 or any(h.value["kind"] != kind for h in hits):
                sys.exit(f"a search returned {len(hits)} memories, or one its filter excludes")
        return times


def main():
    p = argparse.ArgumentParser()
    p.add_argument("old")
    p.add_argument("new")
    p.add_argument("--memories", type=int, default=10000)
    p.add_argument("--dims", type=int, default=384)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--searches", type=int, default=100)
    args = p.parse_args()

    def measure(url, metrics):
        before = counters(metrics)
        times = asyncio.run(searches(url, args.memories, args.dims, args.searches, 7))
        after = counters(metrics)
        n = args.searches + 10
        return times, ((after[0] - before[0]) / n, (after[1] - before[1]) / n)

    results = take_turns(
        args.old, args.new, args.rounds,
        load=lambda url: asyncio.run(load(url, args.memories, args.dims)),
        measure=measure,
        report=lambda rnd, which, got: print(
            f"round {rnd} {which}: p50 {statistics.median(got[0]):.2f} ms", flush=True),
        prefix="vectorgate-langgraph-ab.",
    )
    p50 = {}
    for which in ("old", "new"):
        times = [t for got in results[which] for t in got[0]]
        idx, gets = results[which][-1][1]
        p50[which] = statistics.median(times)
        print(f"{which}: p50 {p50[which]:.2f} ms over {len(times)} searches; per asearch "
              f"{idx:.1f} index searches, {gets:.1f} row-store reads")
    print(f"new / old p50: {p50['new'] / p50['old']:.2f}")


if __name__ == "__main__":
    main()
