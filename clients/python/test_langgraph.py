"""LangGraph's Postgres store and checkpointer against a running vectorgate
(VECTORGATE_URL), used as their documentation shows: `PostgresStore.from_conn_string`
with a vector index (the store, store_vectors with its foreign key ON DELETE CASCADE,
the `DO` block that creates the extension) and `PostgresSaver.from_conn_string`, each
`setup()` run twice (the migrations are idempotent), then the store's put / get /
search (by meaning, and with `filter=`, which LangGraph writes as jsonb operators:
`value->'k' = '...'::jsonb`, `value->>'k' > '...'`) / delete. (The checkpointer's reads, `get_tuple`, select
correlated subqueries over `jsonb_each_text(...)`, which vectorgate refuses with
0A000.) Search results are compared with an exact cosine ranking and
filters evaluated here; the catalog is asked what Postgres would answer. Exits
non-zero on the first failure."""

import math
import os
import sys

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.store.postgres import PostgresStore

URL = os.environ["VECTORGATE_URL"]
TEXTS = {
    "a": "the cat sat",
    "b": "on the mat",
    "c": "a dog barked at the mailman",
    "d": "vectors",
}


def embed(texts):
    """A deterministic 3-d embedding: length, vowels, spaces."""
    return [
        [float(len(t)), float(sum(ch in "aeiou" for ch in t)), float(t.count(" ")) + 0.5]
        for t in texts
    ]


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   langgraph: {name}")


def catalog(sql, *args):
    with psycopg.connect(URL) as c:
        return c.execute(sql, args).fetchall()


def main():
    index = {"dims": 3, "embed": embed, "fields": ["text"]}
    for round_ in (1, 2):
        with PostgresStore.from_conn_string(URL, index=index) as store:
            store.setup()
        with PostgresSaver.from_conn_string(URL) as saver:
            saver.setup()
        print(f"ok   langgraph: setup() of the store and the checkpointer, run {round_}")

    tables = {
        r[0]
        for r in catalog(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'"
        )
    }
    want = {"store", "store_migrations", "store_vectors", "vector_migrations",
            "checkpoints", "checkpoint_blobs", "checkpoint_writes", "checkpoint_migrations"}
    check("the tables setup() made", want - tables, set())
    check(
        "store_vectors' constraints in pg_constraint",
        catalog(
            "SELECT conname, contype, pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = 'store_vectors'::regclass ORDER BY conname"
        ),
        [
            ("store_vectors_pkey", "p", "PRIMARY KEY (prefix, key, field_name)"),
            (
                "store_vectors_prefix_key_fkey",
                "f",
                "FOREIGN KEY (prefix, key) REFERENCES store(prefix, key) ON DELETE CASCADE",
            ),
        ],
    )
    check(
        "store_vectors' columns in information_schema",
        catalog(
            "SELECT column_name, data_type, udt_name, is_nullable FROM information_schema.columns "
            "WHERE table_name = 'store_vectors' ORDER BY ordinal_position"
        ),
        [
            ("prefix", "text", "text", "NO"),
            ("key", "text", "text", "NO"),
            ("field_name", "text", "text", "NO"),
            ("embedding", "USER-DEFINED", "vector", "YES"),
            ("created_at", "timestamp with time zone", "timestamptz", "YES"),
            ("updated_at", "timestamp with time zone", "timestamptz", "YES"),
        ],
    )
    check(
        "checkpoint_writes.task_path added by a migration, with its default",
        catalog(
            "SELECT is_nullable, column_default FROM information_schema.columns "
            "WHERE table_name = 'checkpoint_writes' AND column_name = 'task_path'"
        ),
        [("NO", "''::text")],
    )

    with PostgresStore.from_conn_string(URL, index=index) as store:
        for key, text in TEXTS.items():
            store.put(("docs", "team"), key, {"text": text, "n": len(text)})
        item = store.get(("docs", "team"), "c")
        check("get", (item.key, item.value), ("c", {"text": TEXTS["c"], "n": len(TEXTS["c"])}))
        check("get of a missing key", store.get(("docs", "team"), "zz"), None)

        query = "a cat"
        q = embed([query])[0]
        want = sorted(TEXTS, key=lambda k: -cosine(embed([TEXTS[k]])[0], q))[:3]
        got = [i.key for i in store.search(("docs",), query=query, limit=3)]
        check("search by meaning = exact cosine ranking", got, want)

        # Filters, evaluated here as Postgres would (`->>` compares text).
        kinds = {"a": "pet", "b": "thing", "c": "pet", "d": "thing"}
        for key, text in TEXTS.items():
            store.put(("docs", "team"), key, {"text": text, "n": len(text), "kind": kinds[key]})
        value = {k: {"text": t, "n": len(t), "kind": kinds[k]} for k, t in TEXTS.items()}
        for flt, keep in [
            ({"kind": "pet"}, lambda v: v["kind"] == "pet"),
            ({"n": len(TEXTS["b"])}, lambda v: v["n"] == len(TEXTS["b"])),
            ({"kind": {"$ne": "pet"}}, lambda v: v["kind"] != "pet"),
            ({"n": {"$gt": 20}}, lambda v: str(v["n"]) > "20"),
            ({"kind": "pet", "n": {"$lte": 11}}, lambda v: v["kind"] == "pet" and str(v["n"]) <= "11"),
        ]:
            passing = [k for k in TEXTS if keep(value[k])]
            want = sorted(passing, key=lambda k: -cosine(embed([TEXTS[k]])[0], q))
            got = [i.key for i in store.search(("docs",), query=query, filter=flt, limit=10)]
            check(f"search by meaning with filter={flt}", got, want)
            got = sorted(i.key for i in store.search(("docs",), filter=flt, limit=10))
            check(f"search with filter={flt} alone", got, sorted(passing))
            check(
                f"the items' values come back as dicts (filter={flt})",
                [i.value for i in store.search(("docs",), filter=flt, limit=10) if i.key == passing[0]],
                [value[passing[0]]] if passing else [],
            )

        store.delete(("docs", "team"), "a")
        check("delete", store.get(("docs", "team"), "a"), None)
        check(
            "the deleted item's embedding went with it (ON DELETE CASCADE)",
            catalog("SELECT key FROM store_vectors ORDER BY key"),
            [("b",), ("c",), ("d",)],
        )
        want = sorted([k for k in TEXTS if k != "a"], key=lambda k: -cosine(embed([TEXTS[k]])[0], q))
        got = [i.key for i in store.search(("docs",), query=query, limit=10)]
        check("search after the delete", got, want)


if __name__ == "__main__":
    main()
