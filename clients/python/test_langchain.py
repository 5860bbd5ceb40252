"""langchain-postgres' two vector stores against a running vectorgate (VECTORGATE_URL),
used as their documentation shows, with metadata filters:

- `PGVector` (langchain_pg_collection / langchain_pg_embedding, created by SQLAlchemy
  with a foreign key ON DELETE CASCADE and a GIN index on the jsonb metadata), whose
  filters become `jsonb_path_match(cmetadata, '$.page > $value', ...)`,
  `cmetadata->>'k' IN (...)`, `jsonb_exists(...)`, LIKE on `->>`, and AND/OR of them.
  `embedding_length` is given: vectorgate needs a vector column's dimension (a
  dimensionless `vector` column is refused with 42P16).
- `PGVectorStore` (langchain_postgres.v2, async SQLAlchemy on psycopg): a table with
  uuid ids, metadata columns of its own and the rest in a json column, whose filters
  become comparisons on the columns and on `langchain_metadata->'a'->>'b'`.

Every filtered search is compared with an exact oracle computed here: the filter
evaluated on the documents' metadata as Postgres would (a missing key matches no
comparison), the passing documents ranked by cosine distance. Exits non-zero on the
first failure."""

import math
import os
import random
import sys
import uuid

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_postgres import Column, PGEngine, PGVector, PGVectorStore
from langchain_postgres.v2.indexes import HNSWIndex, HNSWQueryOptions, IVFFlatIndex

URL = os.environ["VECTORGATE_URL"].replace("postgresql://", "postgresql+psycopg://", 1)
DIM = 8
N = 300
K = 5
TOPICS = ["cats", "dogs", "birds", "fish"]


class Seeded(Embeddings):
    """A deterministic embedding: a random vector seeded by the text."""

    def vector(self, text):
        r = random.Random(text)
        return [r.uniform(-1, 1) for _ in range(DIM)]

    def embed_documents(self, texts):
        return [self.vector(t) for t in texts]

    def embed_query(self, text):
        return self.vector(text)


EMBED = Seeded()


def metadata(i):
    m = {"topic": TOPICS[i % 4], "page": i % 30, "nested": {"n": i}}
    if i % 3 == 0:
        m["location"] = "pond" if i % 2 == 0 else "park"
    if i in (17, 203):
        m["gold"] = True
    return m


DOCS = {f"d{i}": (f"document number {i}", metadata(i)) for i in range(N)}


def cosine_distance(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def oracle(query, keep, docs=DOCS):
    q = EMBED.embed_query(query)
    passing = [(cosine_distance(EMBED.vector(text), q), key) for key, (text, m) in docs.items() if keep(m)]
    passing.sort()
    return [key for _, key in passing[:K]]


def mmr(query, keep, k, fetch_k, lambda_mult, docs=DOCS):
    """Maximal marginal relevance over the exact fetch_k nearest passing documents:
    the first is the nearest; each next maximises lambda * similarity to the query -
    (1 - lambda) * its largest similarity to those already chosen. langchain returns the
    chosen in the candidates' order (nearest first)."""
    q = EMBED.embed_query(query)
    candidates = oracle_all(query, keep, docs)[:fetch_k]
    vec = {key: EMBED.vector(docs[key][0]) for key in candidates}
    sim_q = {key: 1 - cosine_distance(vec[key], q) for key in candidates}
    chosen = [max(candidates, key=lambda c: sim_q[c])] if candidates else []
    while len(chosen) < min(k, len(candidates)):
        def score(c):
            redundant = max(1 - cosine_distance(vec[c], vec[s]) for s in chosen)
            return lambda_mult * sim_q[c] - (1 - lambda_mult) * redundant

        chosen.append(max((c for c in candidates if c not in chosen), key=score))
    return [c for c in candidates if c in chosen]


def oracle_all(query, keep, docs=DOCS):
    q = EMBED.embed_query(query)
    passing = [(cosine_distance(EMBED.vector(text), q), key) for key, (text, m) in docs.items() if keep(m)]
    passing.sort()
    return [key for _, key in passing]


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   langchain: {name}")


# (filter, the same filter over a document's metadata as Postgres evaluates it)
FILTERS = [
    ({"topic": "cats"}, lambda m: m["topic"] == "cats"),
    ({"topic": {"$ne": "cats"}}, lambda m: m["topic"] != "cats"),
    ({"page": {"$gt": 25}}, lambda m: m["page"] > 25),
    ({"page": {"$lte": 2}}, lambda m: m["page"] <= 2),
    ({"page": {"$between": [10, 12]}}, lambda m: 10 <= m["page"] <= 12),
    ({"topic": {"$in": ["cats", "fish"]}}, lambda m: m["topic"] in ("cats", "fish")),
    ({"topic": {"$nin": ["cats", "fish"]}}, lambda m: m["topic"] not in ("cats", "fish")),
    ({"location": {"$exists": True}}, lambda m: "location" in m),
    ({"location": {"$exists": False}}, lambda m: "location" not in m),
    ({"location": {"$nin": ["pond"]}}, lambda m: m.get("location") == "park"),
    ({"topic": {"$like": "bi%"}}, lambda m: m["topic"].startswith("bi")),
    ({"topic": {"$ilike": "FI%"}}, lambda m: m["topic"].startswith("fi")),
    # Selective: 2 of 300 documents (0.7%), fewer than k.
    ({"gold": {"$eq": True}}, lambda m: m.get("gold") is True),
    (
        {"$and": [{"topic": {"$in": ["cats", "dogs"]}}, {"location": {"$eq": "pond"}}]},
        lambda m: m["topic"] in ("cats", "dogs") and m.get("location") == "pond",
    ),
    (
        {"$or": [{"page": {"$lt": 1}}, {"gold": {"$eq": True}}]},
        lambda m: m["page"] < 1 or m.get("gold") is True,
    ),
]

QUERIES = ["kittens", "a query about fish", "page twelve"]


def pgvector_store():
    store = PGVector(
        embeddings=EMBED,
        embedding_length=DIM,
        collection_name="lc_test",
        connection=URL,
        use_jsonb=True,
        pre_delete_collection=True,
    )
    docs = [Document(page_content=t, metadata=m) for t, m in DOCS.values()]
    store.add_documents(docs, ids=list(DOCS))
    # Adding again under the same ids updates (INSERT ... ON CONFLICT DO UPDATE).
    store.add_documents(docs[:10], ids=list(DOCS)[:10])

    for query in QUERIES:
        got = [d.id for d in store.similarity_search(query, k=K)]
        check(f"PGVector similarity_search({query!r})", got, oracle(query, lambda m: True))
        scored = store.similarity_search_with_score(query, k=1)
        want = cosine_distance(EMBED.vector(DOCS[scored[0][0].id][0]), EMBED.embed_query(query))
        check(f"PGVector score is the cosine distance ({query!r})", round(scored[0][1], 4), round(want, 4))
        for flt, keep in FILTERS:
            got = [d.id for d in store.similarity_search(query, k=K, filter=flt)]
            check(f"PGVector filter={flt} ({query!r})", got, oracle(query, keep))
    for query in QUERIES:
        got = [d.id for d in store.max_marginal_relevance_search(query, k=4, fetch_k=20, lambda_mult=0.5)]
        check(f"PGVector max_marginal_relevance_search({query!r})", got, mmr(query, lambda m: True, 4, 20, 0.5))
        got = [
            d.id
            for d in store.max_marginal_relevance_search(
                query, k=3, fetch_k=10, lambda_mult=0.25, filter={"topic": {"$in": ["cats", "birds"]}}
            )
        ]
        want = mmr(query, lambda m: m["topic"] in ("cats", "birds"), 3, 10, 0.25)
        check(f"PGVector max_marginal_relevance_search with a filter ({query!r})", got, want)
    # add_texts with metadatas and ids, as its documentation shows.
    extra = {f"x{i}": (f"an extra text {i}", {"topic": "extra", "page": i}) for i in range(12)}
    added = store.add_texts(
        [t for t, _ in extra.values()], metadatas=[m for _, m in extra.values()], ids=list(extra)
    )
    check("PGVector add_texts returns the ids", added, list(extra))
    for query in QUERIES:
        got = [d.id for d in store.similarity_search(query, k=K, filter={"topic": "extra"})]
        check(f"PGVector add_texts then a filtered search ({query!r})", got, oracle(query, lambda m: True, extra))
    got = store.similarity_search("kittens", k=1, filter={"gold": True})[0].metadata
    check("PGVector metadata comes back as a dict", got, DOCS["d17"][1] if got.get("page") == 17 else DOCS["d203"][1])

    store.delete(ids=["d17", "d0", "d1"])
    rest = {k: v for k, v in DOCS.items() if k not in ("d17", "d0", "d1")}
    check(
        "PGVector after delete",
        [d.id for d in store.similarity_search("kittens", k=K, filter={"gold": True})],
        oracle("kittens", lambda m: m.get("gold") is True, rest),
    )
    check("PGVector get_by_ids", sorted(d.id for d in store.get_by_ids(["d2", "d17", "d3"])), ["d2", "d3"])
    store.delete_collection()
    store2 = PGVector(embeddings=EMBED, embedding_length=DIM, collection_name="lc_test", connection=URL)
    check("PGVector delete_collection removes its embeddings (ON DELETE CASCADE)", store2.similarity_search("kittens", k=K), [])


def pgvectorstore_v2():
    engine = PGEngine.from_connection_string(url=URL)
    engine.init_vectorstore_table(
        table_name="lc_v2_docs",
        vector_size=DIM,
        metadata_columns=[Column("topic", "TEXT"), Column("page", "INTEGER")],
        overwrite_existing=True,
    )
    store = PGVectorStore.create_sync(
        engine=engine,
        table_name="lc_v2_docs",
        embedding_service=EMBED,
        metadata_columns=["topic", "page"],
    )
    ids = {key: str(uuid.uuid5(uuid.NAMESPACE_URL, key)) for key in DOCS}
    keys = {v: k for k, v in ids.items()}
    store.add_documents([Document(page_content=t, metadata=m) for t, m in DOCS.values()], ids=list(ids.values()))
    v2_filters = FILTERS + [
        # A key of the json column, nested: langchain_metadata->'nested'->>'n' cast to int.
        ({"nested.n": {"$lt": 4}}, lambda m: m["nested"]["n"] < 4),
        ({"page": {"$in": [3, 4]}}, lambda m: m["page"] in (3, 4)),
    ]
    # v2 compares json values as text; a bool is not one of its filter types.
    v2_filters = [f for f in v2_filters if "gold" not in str(f[0])]
    for query in QUERIES:
        got = [keys[d.id] for d in store.similarity_search(query, k=K)]
        check(f"PGVectorStore similarity_search({query!r})", got, oracle(query, lambda m: True))
        for flt, keep in v2_filters:
            got = [keys[d.id] for d in store.similarity_search(query, k=K, filter=flt)]
            check(f"PGVectorStore filter={flt} ({query!r})", got, oracle(query, keep))
    for query in QUERIES[:2]:
        got = [keys[d.id] for d in store.max_marginal_relevance_search(query, k=4, fetch_k=15, lambda_mult=0.5)]
        check(f"PGVectorStore max_marginal_relevance_search({query!r})", got, mmr(query, lambda m: True, 4, 15, 0.5))
    # A vector index as its documentation applies one: HNSW, then IVFFlat; the
    # results stay the exact ones (vectorgate's index is its own).
    for index in (HNSWIndex(), IVFFlatIndex(lists=4)):
        store.apply_vector_index(index)
        check(f"PGVectorStore is_valid_index after apply_vector_index({index.index_type})", store.is_valid_index(), True)
        store.reindex()
        for query in QUERIES:
            got = [keys[d.id] for d in store.similarity_search(query, k=K, filter={"topic": "dogs"})]
            check(
                f"PGVectorStore with its {index.index_type} index ({query!r})",
                got,
                oracle(query, lambda m: m["topic"] == "dogs"),
            )
        store.drop_vector_index()
        check(f"PGVectorStore is_valid_index after drop_vector_index ({index.index_type})", store.is_valid_index(), False)
    tuned = PGVectorStore.create_sync(
        engine=engine,
        table_name="lc_v2_docs",
        embedding_service=EMBED,
        metadata_columns=["topic", "page"],
        index_query_options=HNSWQueryOptions(ef_search=80),
    )
    got = [keys[d.id] for d in tuned.similarity_search("kittens", k=K)]
    check("PGVectorStore with index_query_options (SET LOCAL hnsw.ef_search)", got, oracle("kittens", lambda m: True))
    doc = store.get_by_ids([ids["d5"]])[0]
    check("PGVectorStore metadata from the columns and the json column", doc.metadata, DOCS["d5"][1])
    store.delete(ids=[ids["d4"], ids["d8"]])
    rest = {k: v for k, v in DOCS.items() if k not in ("d4", "d8")}
    check(
        "PGVectorStore after delete",
        [keys[d.id] for d in store.similarity_search("kittens", k=K, filter={"topic": "cats"})],
        oracle("kittens", lambda m: m["topic"] == "cats", rest),
    )


def main():
    pgvector_store()
    pgvectorstore_v2()


if __name__ == "__main__":
    main()
