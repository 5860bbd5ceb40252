"""Two vectorgate builds taking turns on one data directory, for side-by-side scripts
(`bench/langgraph_ab.py`, `bench/search_forms_ab.py`).

The first build loads the directory; then, round by round, each build serves it in turn
(its own process, the same port, `/metrics` on the next one) while the caller measures,
and is stopped. Both builds see the same rows, index and machine state.
"""

import contextlib
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import psycopg


@contextlib.contextmanager
def serve(binary, data, port):
    """A server of `data` on `port` (metrics on `port + 1`), ready; its URL."""
    log = open(os.path.join(os.path.dirname(data), f"server-{port}.log"), "ab")
    proc = subprocess.Popen(
        [binary, "serve", "--data", data, "--listen", f"127.0.0.1:{port}",
         "--metrics", f"127.0.0.1:{port + 1}"],
        stdout=log, stderr=log,
    )
    url = f"postgresql://bench@127.0.0.1:{port}/postgres"
    try:
        for _ in range(300):
            try:
                psycopg.connect(url).close()
                break
            except psycopg.OperationalError:
                time.sleep(0.1)
        else:
            sys.exit(f"{binary} did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait()
        log.close()


def take_turns(old, new, rounds, load, measure, report, prefix):
    """`load(url)` through `old`, then `rounds` rounds of `measure(url, metrics_port)`
    on each build in turn, `report(round, which, result)` after each. Returns
    {"old": [result per round], "new": [...]}."""
    work = tempfile.mkdtemp(prefix=prefix)
    data = os.path.join(work, "data")
    port = 30000 + random.randrange(20000)
    try:
        with serve(old, data, port) as url:
            load(url)
            # The index is built in the background: let it finish before any timing.
            time.sleep(30)
        results = {"old": [], "new": []}
        for rnd in range(1, rounds + 1):
            for which, binary in (("old", old), ("new", new)):
                with serve(binary, data, port) as url:
                    got = measure(url, port + 1)
                results[which].append(got)
                report(rnd, which, got)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)


def print_round(rnd, which, got):
    """A `report` for `take_turns` whose `measure` gives {name: p50 in ms}."""
    print(f"round {rnd} {which}: " + ", ".join(f"{k} {v:.3f} ms" for k, v in got.items()),
          flush=True)


def print_medians(results, names, rounds):
    """Each name's p50, the median over the rounds after the first (the first warms the
    machine; all rounds when there is one), old -> new."""
    later = slice(1, None) if rounds > 1 else slice(None)
    for name in names:
        old = statistics.median(r[name] for r in results["old"][later])
        new = statistics.median(r[name] for r in results["new"][later])
        print(f"{name}: p50 {old:.3f} ms -> {new:.3f} ms ({new / old:.2f}x)")
