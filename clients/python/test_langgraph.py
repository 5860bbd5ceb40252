"""LangGraph's Postgres store and checkpointer against a running vectorgate
(VECTORGATE_URL), used as their documentation shows: `PostgresStore.from_conn_string`
with a vector index (the store, store_vectors with its foreign key ON DELETE CASCADE,
the `DO` block that creates the extension) and `PostgresSaver.from_conn_string`, each
`setup()` run twice (the migrations are idempotent), then the store's put / get /
search (by meaning, and with `filter=`, which LangGraph writes as jsonb operators:
`value->'k' = '...'::jsonb`, `value->>'k' > '...'`) / delete, re-embedding on update,
`list_namespaces` (prefix, suffix, wildcards, max_depth), `batch`, TTL (expiry,
refresh on read, `sweep_ttl`); the same through `AsyncPostgresStore`; and
`PostgresSaver` / `AsyncPostgresSaver` as the checkpointer of a small graph stopped at
an interrupt and resumed from its checkpoint in a new process. Search results are
compared with an exact cosine ranking and filters evaluated here; the catalog is asked
what Postgres would answer. Exits non-zero on the first failure."""

import asyncio
import math
import os
import subprocess
import sys
import time
from typing import TypedDict

import psycopg
from langgraph.checkpoint.postgres import PostgresSaver
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from langgraph.graph import END, START, StateGraph
from langgraph.store.base import GetOp, ListNamespacesOp, PutOp, SearchOp
from langgraph.store.postgres import AsyncPostgresStore, PostgresStore

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

        # Re-embedding on update: the item is found by its new text.
        store.put(("docs", "team"), "b", {"text": "vectors of a new kind entirely", "kind": "thing"})
        texts = dict(TEXTS, b="vectors of a new kind entirely")
        del texts["a"]
        q2 = embed(["vectors of a new kind entirely"])[0]
        want = sorted(texts, key=lambda k: -cosine(embed([texts[k]])[0], q2))[:2]
        got = [i.key for i in store.search(("docs",), query="vectors of a new kind entirely", limit=2)]
        check("re-embedded on update: search by the new text", got, want)

    namespaces_and_batch()
    ttl()
    asyncio.run(async_store())
    checkpointer()
    asyncio.run(async_checkpointer())


NAMESPACES = [("users", "alice", "notes"), ("users", "alice", "prefs"), ("users", "bob", "notes"),
              ("teams", "core"), ("users", "carol")]


def namespaces_and_batch():
    index = {"dims": 3, "embed": embed, "fields": ["text"]}
    with PostgresStore.from_conn_string(URL, index=index) as store:
        for ns in NAMESPACES:
            store.put(ns, "k", {"text": "/".join(ns)})
        everything = sorted(set(NAMESPACES) | {("docs", "team")})

        def expect(prefix=None, suffix=None, max_depth=None):
            out = set()
            for ns in everything:
                if prefix and not (len(ns) >= len(prefix) and all(p in ("*", n) for p, n in zip(prefix, ns))):
                    continue
                if suffix and not (len(ns) >= len(suffix) and all(
                        p in ("*", n) for p, n in zip(suffix, ns[len(ns) - len(suffix):]))):
                    continue
                out.add(ns[:max_depth] if max_depth else ns)
            return sorted(out)

        for kw in [{}, {"prefix": ("users",)}, {"prefix": ("users", "*", "notes")},
                   {"suffix": ("notes",)}, {"prefix": ("users",), "max_depth": 2},
                   {"max_depth": 1}]:
            check(f"list_namespaces({kw})", sorted(store.list_namespaces(**kw, limit=100)), expect(**kw))
        got = store.batch([
            PutOp(("users", "carol"), "k2", {"text": "carol two"}),
            GetOp(("users", "carol"), "k"),
            SearchOp(("users",), filter={"text": "users/bob/notes"}, limit=5),
            ListNamespacesOp(match_conditions=None, max_depth=None, limit=100, offset=0),
        ])
        check("batch: its put is there afterwards", store.get(("users", "carol"), "k2").value, {"text": "carol two"})
        check(
            "batch: put, get, search, list_namespaces in one call",
            (got[0], got[1].value, [(i.namespace, i.key) for i in got[2]], sorted(got[3])),
            (None, {"text": "users/carol"}, [(("users", "bob", "notes"), "k")], expect()),
        )


def ttl():
    ttl_conf = {"default_ttl": 1.0, "refresh_on_read": True, "omit_expired": True}
    with PostgresStore.from_conn_string(URL, ttl=ttl_conf) as store:
        store.setup()
        store.put(("ttl",), "short", {"v": 1}, ttl=0.01)  # 0.6 s
        store.put(("ttl",), "long", {"v": 2})  # the default, a minute

        def expires(key):
            return catalog("SELECT expires_at FROM store WHERE prefix = 'ttl' AND key = %s", key)[0][0]

        before = expires("long")
        time.sleep(0.2)
        check("get with refresh_ttl: the item", store.get(("ttl",), "long").value, {"v": 2})
        check("get with refresh_ttl moves expires_at later", expires("long") > before, True)
        time.sleep(1.0)
        check("an expired item is not read (omit_expired)", store.get(("ttl",), "short"), None)
        check("sweep_ttl removes the expired item", store.sweep_ttl(), 1)
        check(
            "what sweep_ttl left",
            catalog("SELECT key FROM store WHERE prefix = 'ttl' ORDER BY key"),
            [("long",)],
        )
    # A search by meaning under the same TTL: its WHERE clause has `expires_at > NOW()`
    # and its refresh is an UPDATE ... FROM the search's results.
    with PostgresStore.from_conn_string(
        URL, ttl=ttl_conf, index={"dims": 3, "embed": embed, "fields": ["text"]}
    ) as store:
        store.setup()
        store.put(("ttlsearch",), "short", {"text": "cats purr"}, ttl=0.01)
        store.put(("ttlsearch",), "long", {"text": "cats sleep"})

        def expires_at(key):
            return catalog(
                "SELECT expires_at FROM store WHERE prefix = 'ttlsearch' AND key = %s", key
            )[0][0]

        before = expires_at("long")
        time.sleep(1.0)
        got = [i.key for i in store.search(("ttlsearch",), query="cats", limit=5)]
        check("a search by meaning leaves out an expired item (omit_expired)", got, ["long"])
        check("the search refreshes what it found (refresh_on_read)", expires_at("long") > before, True)


async def async_store():
    index = {"dims": 3, "embed": embed, "fields": ["text"]}
    async with AsyncPostgresStore.from_conn_string(URL, index=index) as store:
        await store.setup()
        texts = {"x": "async cats purr", "y": "async dogs bark loudly", "z": "async"}
        for k, t in texts.items():
            await store.aput(("async", "mem"), k, {"text": t, "len": len(t)})
        item = await store.aget(("async", "mem"), "y")
        check("AsyncPostgresStore: aget", item.value, {"text": texts["y"], "len": len(texts["y"])})
        q = embed(["cats"])[0]
        want = sorted(texts, key=lambda k: -cosine(embed([texts[k]])[0], q))[:2]
        got = [i.key for i in await store.asearch(("async",), query="cats", limit=2)]
        check("AsyncPostgresStore: asearch by meaning", got, want)
        passing = [k for k, t in texts.items() if str(len(t)) > "10"]
        want = sorted(passing, key=lambda k: -cosine(embed([texts[k]])[0], q))
        got = [i.key for i in await store.asearch(("async",), query="cats", filter={"len": {"$gt": 10}}, limit=5)]
        check("AsyncPostgresStore: asearch with a filter", got, want)
        check("AsyncPostgresStore: alist_namespaces",
              await store.alist_namespaces(prefix=("async",)), [("async", "mem")])
        got = await store.abatch([GetOp(("async", "mem"), "x"), GetOp(("async", "mem"), "nope")])
        check("AsyncPostgresStore: abatch", [g.value if g else None for g in got],
              [{"text": texts["x"], "len": len(texts["x"])}, None])
        await store.adelete(("async", "mem"), "x")
        check("AsyncPostgresStore: adelete", await store.aget(("async", "mem"), "x"), None)


class State(TypedDict):
    n: int
    log: list


def graph():
    def inc(s):
        return {"n": s["n"] + 1, "log": s["log"] + ["inc"]}

    def dbl(s):
        return {"n": s["n"] * 2, "log": s["log"] + ["dbl"]}

    g = StateGraph(State)
    g.add_node("inc", inc)
    g.add_node("dbl", dbl)
    g.add_edge(START, "inc")
    g.add_edge("inc", "dbl")
    g.add_edge("dbl", END)
    return g


RESUME = """
import sys
sys.path.insert(0, {here!r})
import test_langgraph as t
from langgraph.checkpoint.postgres import PostgresSaver
with PostgresSaver.from_conn_string(t.URL) as saver:
    app = t.graph().compile(checkpointer=saver, interrupt_before=["dbl"])
    print(repr(app.invoke(None, {{"configurable": {{"thread_id": "resume-me"}}}})))
"""


def checkpointer():
    with PostgresSaver.from_conn_string(URL) as saver:
        app = graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "t-1"}}
        check("checkpointer: invoke", app.invoke({"n": 1, "log": []}, cfg), {"n": 4, "log": ["inc", "dbl"]})
        state = app.get_state(cfg)
        check("checkpointer: get_state", (state.values, state.next), ({"n": 4, "log": ["inc", "dbl"]}, ()))
        history = [(s.values, s.next) for s in app.get_state_history(cfg)]
        check("checkpointer: the state history, newest first", history, [
            ({"n": 4, "log": ["inc", "dbl"]}, ()),
            ({"n": 2, "log": ["inc"]}, ("dbl",)),
            ({"n": 1, "log": []}, ("inc",)),
            ({}, ("__start__",)),
        ])
        check("checkpointer: another thread is apart",
              app.get_state({"configurable": {"thread_id": "t-2"}}).values, {})
        # Stopped before `dbl`; a new process picks the thread up from its checkpoint.
        app = graph().compile(checkpointer=saver, interrupt_before=["dbl"])
        cfg = {"configurable": {"thread_id": "resume-me"}}
        check("checkpointer: run to the interrupt", app.invoke({"n": 5, "log": []}, cfg),
              {"n": 6, "log": ["inc"]})
        check("checkpointer: waiting at dbl", app.get_state(cfg).next, ("dbl",))
    here = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", RESUME.format(here=here)], capture_output=True,
                         text=True, env=dict(os.environ), check=False)
    check("checkpointer: resumed in a new process", (out.returncode, out.stdout.strip(), out.stderr[-500:]),
          (0, repr({"n": 12, "log": ["inc", "dbl"]}), ""))


async def async_checkpointer():
    async with AsyncPostgresSaver.from_conn_string(URL) as saver:
        await saver.setup()
        app = graph().compile(checkpointer=saver)
        cfg = {"configurable": {"thread_id": "a-1"}}
        check("AsyncPostgresSaver: ainvoke", await app.ainvoke({"n": 2, "log": []}, cfg),
              {"n": 6, "log": ["inc", "dbl"]})
        state = await app.aget_state(cfg)
        check("AsyncPostgresSaver: aget_state", (state.values, state.next), ({"n": 6, "log": ["inc", "dbl"]}, ()))
        check("AsyncPostgresSaver: alist", len([c async for c in saver.alist(cfg)]), 4)


if __name__ == "__main__":
    main()
