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
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from langgraph_store import make_embed, namespace_of, text_of, value_of  # noqa: E402

from langgraph.store.base import PutOp  # noqa: E402
from langgraph.store.postgres.aio import AsyncPostgresStore  # noqa: E402


def index_config(dims):
    return {"dims": dims, "embed": make_embed(dims), "fields": ["text"]}


def start(binary, data, port, metrics):
    log = open(os.path.join(os.path.dirname(data), f"server-{port}.log"), "ab")
    proc = subprocess.Popen(
        [binary, "serve", "--data", data, "--listen", f"127.0.0.1:{port}",
         "--metrics", f"127.0.0.1:{metrics}"],
        stdout=log, stderr=log,
    )
    for _ in range(300):
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{metrics}/readyz", timeout=1).read()
            return proc
        except Exception:
            time.sleep(0.1)
    proc.kill()
    sys.exit(f"{binary} did not start")


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
    work = tempfile.mkdtemp(prefix="vectorgate-langgraph-ab.")
    data = os.path.join(work, "data")
    port = 30000 + random.randrange(20000)
    url = f"postgresql://bench@127.0.0.1:{port}/postgres"
    try:
        proc = start(args.old, data, port, port + 1)
        asyncio.run(load(url, args.memories, args.dims))
        # The index is built in the background: let it finish before any timing.
        time.sleep(30)
        proc.terminate()
        proc.wait()
        times = {"old": [], "new": []}
        per_search = {}
        for rnd in range(1, args.rounds + 1):
            for which, binary in (("old", args.old), ("new", args.new)):
                proc = start(binary, data, port, port + 1)
                before = counters(port + 1)
                t = asyncio.run(searches(url, args.memories, args.dims, args.searches, 7))
                after = counters(port + 1)
                proc.terminate()
                proc.wait()
                n = args.searches + 10
                per_search[which] = ((after[0] - before[0]) / n, (after[1] - before[1]) / n)
                times[which] += t
                print(f"round {rnd} {which}: p50 {statistics.median(t):.2f} ms", flush=True)
        for which in ("old", "new"):
            idx, gets = per_search[which]
            print(f"{which}: p50 {statistics.median(times[which]):.2f} ms over "
                  f"{len(times[which])} searches; per asearch {idx:.1f} index searches, "
                  f"{gets:.1f} row-store reads")
        print(f"new / old p50: {statistics.median(times['new']) / statistics.median(times['old']):.2f}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
