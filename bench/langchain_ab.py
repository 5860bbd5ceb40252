"""Two vectorgate builds side by side on LangChain's `PGVector` store.

    python bench/langchain_ab.py OLD_BIN NEW_BIN [--docs 10000] [--dim 384] [--rounds 3] [--queries 200]

Run with the interpreter of `scripts/client-tests.sh`'s `venv-langchain` (it has
langchain-postgres and psycopg). Loads one data directory through the first build:
`--docs` texts added to a `PGVector` collection (`use_jsonb=True`, metadata `{"topic":
i % 10}`), their embeddings deterministic (no model), and the HNSW index LangChain's
documentation has users create (`USING hnsw (embedding vector_cosine_ops)`). Then the
builds take turns serving that same directory, round by round; each runs
`similarity_search(q, k=10)` and `similarity_search(q, k=10, filter={"topic": 3})`
`--queries` times each (after 10 untimed) through one `PGVector` (SQLAlchemy sessions
on psycopg, as an application has it), and is stopped. Prints each call's p50 per build
and round, and the medians over the rounds after the first.
"""

import argparse
import os
import random
import statistics
import sys
import time

import psycopg
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from take_turns import print_medians, print_round, take_turns  # noqa: E402


class Seeded(Embeddings):
    """A text's embedding: uniform random numbers seeded by the text."""

    def __init__(self, dim):
        self.dim = dim

    def embed_query(self, text):
        rnd = random.Random(text)
        return [rnd.random() - 0.5 for _ in range(self.dim)]

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]


def store(url, dim):
    url = url.replace("postgresql://", "postgresql+psycopg://", 1)
    return PGVector(embeddings=Seeded(dim), embedding_length=dim, collection_name="bench",
                    connection=url, use_jsonb=True)


def load(url, docs, dim):
    s = store(url, dim)
    for start in range(0, docs, 500):
        ids = range(start, min(docs, start + 500))
        s.add_texts([f"document {i}" for i in ids], metadatas=[{"topic": i % 10} for i in ids],
                    ids=[str(i) for i in ids])
    with psycopg.connect(url, autocommit=True) as c:
        c.execute("CREATE INDEX ON langchain_pg_embedding USING hnsw (embedding vector_cosine_ops)")


CALLS = {
    "similarity_search": {},
    "similarity_search, filter": {"filter": {"topic": 3}},
}


def measure(url, dim, queries):
    s = store(url, dim)
    out = {}
    for name, kw in CALLS.items():
        for i in range(10):
            s.similarity_search(f"warm {i}", k=10, **kw)
        times = []
        for i in range(queries):
            t = time.perf_counter()
            s.similarity_search(f"query {i}", k=10, **kw)
            times.append((time.perf_counter() - t) * 1000)
        out[name] = statistics.median(times)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("old")
    ap.add_argument("new")
    ap.add_argument("--docs", type=int, default=10000)
    ap.add_argument("--dim", type=int, default=384)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args()
    results = take_turns(
        a.old, a.new, a.rounds,
        load=lambda url: load(url, a.docs, a.dim),
        measure=lambda url, _metrics: measure(url, a.dim, a.queries),
        report=print_round,
        prefix="vectorgate-langchain-ab.",
    )
    print_medians(results, CALLS, a.rounds)


if __name__ == "__main__":
    main()
