"""Supabase's vecs against a running vectorgate (VECTORGATE_URL), used as its README
shows: a client (which runs `create schema if not exists vecs`), a collection (a table
`vecs.<name>` made by SQLAlchemy, with a GIN index on its jsonb metadata), `upsert`,
`create_index` (HNSW, by the measure's operator class), `query` with metadata filters
(`$eq`, `$ne`, `$gt`, `$gte`, `$lt`, `$lte`, `$in`, `$contains`, `$and`, `$or`), with
values and metadata, by the three measures; `fetch`, `collection[id]`, `delete` by ids
and by filter, `list_collections`, `get_collection`, `delete_collection`.

Every search is compared with an exact oracle computed here: the filter evaluated on
the records' metadata as Postgres evaluates vecs' SQL for it, the passing records ranked
by the measure. Exits non-zero on the first failure."""

import math
import os
import random
import sys
import warnings

import vecs

URL = os.environ["VECTORGATE_URL"]
DIM = 8
N = 240
K = 6
TOPICS = ["cats", "dogs", "birds", "fish"]
MISSING = object()

checks = 0


def check(cond, what):
    global checks
    if not cond:
        print(f"FAILED: {what}")
        sys.exit(1)
    checks += 1


def vector(seed):
    r = random.Random(f"vecs-{seed}")
    return [r.uniform(-1, 1) for _ in range(DIM)]


def metadata(i):
    m = {"year": 1990 + i % 30, "topic": TOPICS[i % 4]}
    if i % 5 == 0:
        m["tags"] = ["red", "blue"] if i % 2 else ["green"]
    if i % 7 == 0:
        m["score"] = 0.5 * (i % 11)
    return m


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def l2(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def neg_dot(a, b):
    return -sum(x * y for x, y in zip(a, b))


MEASURES = {
    "cosine_distance": cosine,
    "l2_distance": l2,
    "max_inner_product": neg_dot,
}


def matches(meta, f):
    """vecs' filter on one record's metadata, as Postgres evaluates its SQL."""
    ((key, value),) = f.items()
    if key == "$and":
        return all(matches(meta, c) for c in value)
    if key == "$or":
        return any(matches(meta, c) for c in value)
    ((op, arg),) = value.items()
    have = meta.get(key, MISSING)
    if have is MISSING:
        # `metadata @> '{"k": v}'` is false, and `metadata->'k' <op> v` is NULL.
        return False
    if op == "$eq":
        return have == arg
    if op == "$ne":
        return have != arg
    if op == "$in":
        return have in arg
    if op == "$contains":
        return isinstance(have, list) and arg in have
    # Numbers against numbers (jsonb orders them numerically); the filters here compare
    # only numeric keys with numbers.
    return {
        "$lt": have < arg,
        "$lte": have <= arg,
        "$gt": have > arg,
        "$gte": have >= arg,
    }[op]


def oracle(records, q, f, measure, k):
    ranked = sorted(
        (MEASURES[measure](v, q), rid)
        for rid, (v, m) in records.items()
        if f is None or matches(m, f)
    )
    return ranked[:k]


warnings.simplefilter("ignore")  # "no covering index" for the unindexed measures

# A client twice: its set-up (create schema/extension if not exists) is idempotent.
vecs.create_client(URL).disconnect()
vx = vecs.create_client(URL)
docs = vx.get_or_create_collection(name="docs", dimension=DIM)
again = vx.get_or_create_collection(name="docs", dimension=DIM)
check(again.dimension == DIM, "get_or_create_collection finds the collection")

records = {f"rec{i}": (vector(i), metadata(i)) for i in range(N)}
docs.upsert(records=[(rid, v, m) for rid, (v, m) in records.items()])
check(len(docs) == N, f"len after upsert: {len(docs)}")

# An upsert of existing ids replaces their vectors and metadata.
for i in range(0, N, 9):
    rid = f"rec{i}"
    records[rid] = (vector(10_000 + i), {**metadata(i), "updated": True})
docs.upsert(records=[(rid, records[rid][0], records[rid][1]) for rid in list(records)[::9]])
check(len(docs) == N, "len after re-upsert")

docs.create_index(
    method=vecs.IndexMethod.hnsw, measure=vecs.IndexMeasure.cosine_distance
)
check(
    (docs.index or "").startswith("ix_vector_cosine_ops_hnsw"),
    f"the collection's index is found in the catalog: {docs.index}",
)
check(
    docs.is_indexed_for_measure(vecs.IndexMeasure.cosine_distance),
    "indexed for cosine distance",
)

FILTERS = [
    None,
    {"year": {"$eq": 2001}},
    {"topic": {"$eq": "dogs"}},
    {"year": {"$ne": 2001}},
    {"year": {"$gt": 2010}},
    {"year": {"$gte": 2010}},
    {"year": {"$lt": 1995}},
    {"year": {"$lte": 1995}},
    {"score": {"$gt": 1.0}},
    {"topic": {"$in": ["cats", "fish"]}},
    {"year": {"$in": [1990, 1991, 2019]}},
    {"tags": {"$contains": "red"}},
    {"$and": [{"topic": {"$eq": "birds"}}, {"year": {"$gte": 2000}}]},
    {"$or": [{"tags": {"$contains": "green"}}, {"year": {"$lt": 1993}}]},
    {"updated": {"$eq": True}},
]

for qi in range(4):
    q = vector(f"query-{qi}")
    for f in FILTERS:
        want = oracle(records, q, f, "cosine_distance", K)
        got = docs.query(data=q, limit=K, filters=f)
        check(
            got == [rid for _, rid in want],
            f"query {qi} with filter {f}: got {got}, want {[r for _, r in want]}",
        )

# Distances and metadata come back with the ids.
q = vector("query-values")
want = oracle(records, q, None, "cosine_distance", K)
got = docs.query(data=q, limit=K, include_value=True, include_metadata=True)
check(len(got) == K, "include_value/include_metadata: k rows")
for (rid, dist, meta), (wdist, wid) in zip(got, want):
    check(rid == wid, f"ids with values: {rid} vs {wid}")
    check(abs(dist - wdist) < 1e-5, f"distance of {rid}: {dist} vs {wdist}")
    check(meta == records[rid][1], f"metadata of {rid}: {meta}")

# The other measures (no index of their own: answered exactly).
for measure in ("l2_distance", "max_inner_product"):
    for f in (None, {"topic": {"$eq": "cats"}}):
        want = oracle(records, q, f, measure, K)
        got = docs.query(data=q, limit=K, filters=f, measure=measure)
        check(got == [rid for _, rid in want], f"{measure} with {f}: {got}")

# fetch and [] return the records as stored.
fetched = docs.fetch(ids=["rec1", "rec9", "nope"])
check(sorted(r[0] for r in fetched) == ["rec1", "rec9"], f"fetch: {fetched}")
for rid, v, m in fetched:
    check(all(abs(a - b) < 1e-6 for a, b in zip(v, records[rid][0])), f"vector of {rid}")
    check(m == records[rid][1], f"metadata of {rid}")
rid, v, m = docs["rec2"]
check(rid == "rec2" and m == records["rec2"][1], "collection[id]")

# delete by ids, then by a filter; searches no longer find them.
deleted = docs.delete(ids=["rec0", "rec1", "rec2"])
check(sorted(deleted) == ["rec0", "rec1", "rec2"], f"delete by ids: {deleted}")
for r in ("rec0", "rec1", "rec2"):
    del records[r]
gone = {rid for rid, (_, m) in records.items() if m["topic"] == "fish" and m["year"] < 2000}
deleted = docs.delete(filters={"$and": [{"topic": {"$eq": "fish"}}, {"year": {"$lt": 2000}}]})
check(set(deleted) == gone, f"delete by filter: {sorted(deleted)} vs {sorted(gone)}")
for r in gone:
    del records[r]
check(len(docs) == len(records), f"len after deletes: {len(docs)}")
for qi in range(3):
    q = vector(f"after-delete-{qi}")
    for f in (None, {"topic": {"$eq": "fish"}}):
        want = oracle(records, q, f, "cosine_distance", K)
        got = docs.query(data=q, limit=K, filters=f)
        check(got == [rid for _, rid in want], f"after deletes, {f}: {got}")

# A second collection; the client lists both; deleting one leaves the other.
other = vx.get_or_create_collection(name="other", dimension=3)
other.upsert(records=[("a", [1, 0, 0], {}), ("b", [0, 1, 0], {"k": 1})])
check(other.query(data=[0.9, 0.1, 0], limit=1) == ["a"], "second collection query")
names = sorted(c.name for c in vx.list_collections())
check(names == ["docs", "other"], f"list_collections: {names}")
check(vx.get_collection("other").dimension == 3, "get_collection's dimension")
vx.delete_collection("other")
names = sorted(c.name for c in vx.list_collections())
check(names == ["docs"], f"after delete_collection: {names}")
try:
    vx.get_collection("other")
    check(False, "get_collection of a deleted collection")
except vecs.exc.CollectionNotFound:
    pass
check(len(vx.get_collection("docs")) == len(records), "docs is still there")
vx.delete_collection("docs")
vx.disconnect()

print(f"vecs: {checks} checks passed")
