"""LlamaIndex's Postgres vector store (llama-index-vector-stores-postgres) against a
running vectorgate (VECTORGATE_URL), used as its documentation shows:
`PGVectorStore.from_params(...)` with an HNSW index (SQLAlchemy creates the table with a
bigserial key, a jsonb `metadata_` column and an index on `metadata_->>'ref_doc_id'`),
nodes added with their embeddings, and queries with `MetadataFilters`, which it writes
as `metadata_->>'k' = 'v'`, `(metadata_->>'k')::float > 3.0`, `IN (...)`, `LIKE`,
`metadata_::jsonb->'tags' @> '["a"]'`, `?|`, `?&`, `IS NULL`, nested AND/OR; over
psycopg2 (query, add, delete) and asyncpg (aquery, async_add).

Every query is compared with an exact oracle computed here: the filter evaluated on the
nodes' metadata as Postgres would (a missing key matches no comparison), the passing
nodes ranked by cosine distance. Exits non-zero on the first failure."""

import asyncio
import math
import os
import random
import sys

import psycopg2
from urllib.parse import urlparse

from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode
from llama_index.core.vector_stores import (
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)
from llama_index.vector_stores.postgres import PGVectorStore

URL = urlparse(os.environ["VECTORGATE_URL"])
DIM = 8
N = 300
K = 5
TOPICS = ["cats", "dogs", "birds", "fish"]


def vector(text):
    r = random.Random(text)
    return [r.uniform(-1, 1) for _ in range(DIM)]


def metadata(i):
    m = {"topic": TOPICS[i % 4], "page": i % 30, "tags": ["a", "b"] if i % 2 else ["c"]}
    if i % 3 == 0:
        m["location"] = "pond" if i % 2 == 0 else "park"
    if i in (17, 203):
        m["gold"] = "yes"
    return m


NODES = {f"n{i}": (f"node number {i}", metadata(i)) for i in range(N)}


def cosine_distance(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def oracle(query, keep, nodes=NODES):
    q = vector(query)
    passing = sorted(
        (cosine_distance(vector(text), q), key) for key, (text, m) in nodes.items() if keep(m)
    )
    return [key for _, key in passing[:K]]


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   llamaindex: {name}")


def f(key, value, op=FilterOperator.EQ):
    return MetadataFilter(key=key, value=value, operator=op)


# (filters, the same filters over a node's metadata as Postgres evaluates them)
FILTERS = [
    (MetadataFilters(filters=[f("topic", "cats")]), lambda m: m["topic"] == "cats"),
    (MetadataFilters(filters=[f("topic", "cats", FilterOperator.NE)]), lambda m: m["topic"] != "cats"),
    (MetadataFilters(filters=[f("page", 25, FilterOperator.GT)]), lambda m: m["page"] > 25),
    (MetadataFilters(filters=[f("page", 2, FilterOperator.LTE)]), lambda m: m["page"] <= 2),
    (MetadataFilters(filters=[f("page", 12)]), lambda m: m["page"] == 12),
    (
        MetadataFilters(filters=[f("topic", ["cats", "fish"], FilterOperator.IN)]),
        lambda m: m["topic"] in ("cats", "fish"),
    ),
    (
        MetadataFilters(filters=[f("location", ["pond"], FilterOperator.NIN)]),
        lambda m: m.get("location") == "park",
    ),
    (MetadataFilters(filters=[f("tags", "a", FilterOperator.CONTAINS)]), lambda m: "a" in m["tags"]),
    (
        MetadataFilters(filters=[f("tags", ["c", "x"], FilterOperator.ANY)]),
        lambda m: "c" in m["tags"],
    ),
    (
        MetadataFilters(filters=[f("tags", ["a", "b"], FilterOperator.ALL)]),
        lambda m: "a" in m["tags"] and "b" in m["tags"],
    ),
    (MetadataFilters(filters=[f("topic", "ir", FilterOperator.TEXT_MATCH)]), lambda m: "ir" in m["topic"]),
    (
        MetadataFilters(filters=[f("topic", "FI", FilterOperator.TEXT_MATCH_INSENSITIVE)]),
        lambda m: "fi" in m["topic"],
    ),
    (MetadataFilters(filters=[f("location", None, FilterOperator.IS_EMPTY)]), lambda m: "location" not in m),
    # Selective: 2 of 300 nodes (0.7%), fewer than k.
    (MetadataFilters(filters=[f("gold", "yes")]), lambda m: m.get("gold") == "yes"),
    (
        MetadataFilters(filters=[f("topic", "dogs"), f("page", 10, FilterOperator.LT)]),
        lambda m: m["topic"] == "dogs" and m["page"] < 10,
    ),
    (
        MetadataFilters(
            filters=[
                f("gold", "yes"),
                MetadataFilters(filters=[f("topic", "birds"), f("location", "pond")]),
            ],
            condition=FilterCondition.OR,
        ),
        lambda m: m.get("gold") == "yes" or (m["topic"] == "birds" and m.get("location") == "pond"),
    ),
]

QUERIES = ["kittens", "a query about fish"]


def node(key):
    text, m = NODES[key]
    # Each node is the one node of a document ("doc17" for "n17"): its ref_doc_id.
    source = RelatedNodeInfo(node_id="doc" + key[1:])
    return TextNode(
        text=text,
        id_=key,
        metadata=m,
        embedding=vector(text),
        relationships={NodeRelationship.SOURCE: source},
    )


def ids_of(result):
    return list(result.ids)


async def asynchronous(store):
    added = await store.async_add([node("n0")])
    check("async_add (asyncpg) returns the node id", added, ["n0"])
    flt, keep = FILTERS[0]
    result = await store.aquery(VectorStoreQuery(query_embedding=vector("kittens"), similarity_top_k=K, filters=flt))
    check("aquery (asyncpg) with a filter", ids_of(result), oracle("kittens", keep))


def main():
    # A fresh table on every run (the store itself only creates it if missing).
    with psycopg2.connect(os.environ["VECTORGATE_URL"]) as conn, conn.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS data_li_docs")
    store = PGVectorStore.from_params(
        database=URL.path.lstrip("/"),
        host=URL.hostname,
        port=str(URL.port),
        user=URL.username,
        password="unused",
        table_name="li_docs",
        embed_dim=DIM,
        hnsw_kwargs={
            "hnsw_m": 16,
            "hnsw_ef_construction": 64,
            "hnsw_ef_search": 100,
            "hnsw_dist_method": "vector_cosine_ops",
        },
    )
    added = store.add([node(key) for key in NODES if key != "n0"])
    check("add returns the node ids", added, [key for key in NODES if key != "n0"])
    asyncio.run(asynchronous(store))

    for query in QUERIES:
        result = store.query(VectorStoreQuery(query_embedding=vector(query), similarity_top_k=K))
        check(f"query({query!r})", ids_of(result), oracle(query, lambda m: True))
        want = 1 - cosine_distance(vector(NODES[result.ids[0]][0]), vector(query))
        check(f"similarity is 1 - cosine distance ({query!r})", round(result.similarities[0], 4), round(want, 4))
        check(
            f"nodes come back with their metadata ({query!r})",
            result.nodes[0].metadata,
            NODES[result.ids[0]][1],
        )
        for filters, keep in FILTERS:
            result = store.query(
                VectorStoreQuery(query_embedding=vector(query), similarity_top_k=K, filters=filters)
            )
            check(f"query with {filters.model_dump_json()} ({query!r})", ids_of(result), oracle(query, keep))

    # delete(ref_doc_id) removes the nodes of that document: metadata_->>'ref_doc_id'.
    store.delete("doc17")
    rest = {k: v for k, v in NODES.items() if k != "n17"}
    result = store.query(
        VectorStoreQuery(query_embedding=vector("kittens"), similarity_top_k=K, filters=FILTERS[13][0])
    )
    check("query after delete", ids_of(result), oracle("kittens", FILTERS[13][1], rest))


if __name__ == "__main__":
    main()
