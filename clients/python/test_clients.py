"""Python clients against a running vectorgate (VECTORGATE_URL): psycopg 3 (text and
binary, server-side prepared statements, executemany, COPY, pgvector's HalfVector,
SparseVector and Bit),
psycopg2, asyncpg (its type
introspection, prepared statements, arrays), pgvector-python on all three, SQLAlchemy 2 (engine connect, table names, transactions, the ORM with pgvector's
Vector type, ARRAY columns), and pgvector-python's README example.
Each check compares what comes back with what was written or with an exact ranking
computed here. Exits non-zero on the first failure."""

import asyncio
import os
import sys

import asyncpg
import numpy as np
import psycopg
import psycopg2
from pgvector import Bit, HalfVector, SparseVector
from pgvector.asyncpg import register_vector as register_vector_asyncpg
from pgvector.psycopg import register_vector
from pgvector.psycopg2 import register_vector as register_vector2
from pgvector.sqlalchemy import Vector
from sqlalchemy import BigInteger, String, create_engine, inspect, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

URL = os.environ["VECTORGATE_URL"]
rng = np.random.default_rng(7)
VECS = {i: rng.standard_normal(4).astype(np.float32) for i in range(40)}


def nearest(q, k, ids=None):
    ids = list(VECS) if ids is None else ids
    return sorted(ids, key=lambda i: float(np.linalg.norm(VECS[i] - q)))[:k]


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   {name}")


def psycopg3():
    conn = psycopg.connect(URL, autocommit=True)
    check("psycopg: server_version is a Postgres version", conn.info.server_version >= 160000, True)
    conn.execute("DROP TABLE IF EXISTS py_items")
    conn.execute("CREATE TABLE py_items (id bigint PRIMARY KEY, name text, embedding vector(4)) WITH (distance = 'l2')")
    register_vector(conn)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO py_items VALUES (%s, %s, %s)",
            [(i, f"n{i}", v) for i, v in VECS.items() if i < 30],
        )
        with cur.copy("COPY py_items (id, name, embedding) FROM STDIN") as copy:
            for i in range(30, 40):
                copy.write_row((i, f"n{i}", "[" + ",".join(str(float(x)) for x in VECS[i]) + "]"))
    check("psycopg: executemany + COPY", conn.execute("SELECT count(*) FROM py_items").fetchone()[0], 40)
    q = rng.standard_normal(4).astype(np.float32)
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            for sql in (
                "SELECT id, embedding FROM py_items ORDER BY embedding <-> %s LIMIT 5",
                "SELECT id, embedding FROM vector_search('py_items', %s, 5) ORDER BY distance",
            ):
                cur.execute(sql, (q,), prepare=True)
                rows = cur.fetchall()
                check(f"psycopg binary={binary}: {sql[:40]}", [r[0] for r in rows], nearest(q, 5))
                check(
                    f"psycopg binary={binary}: vectors come back as written",
                    all(np.allclose(np.asarray(r[1].to_numpy()), VECS[r[0]]) for r in rows),
                    True,
                )
    with conn.cursor() as cur:
        cur.execute("SELECT id FROM py_items WHERE name = %s", ("n7",), prepare=True)
        check("psycopg: text parameter", cur.fetchall(), [(7,)])
        # A plain list of floats goes out as a text float8[]; run several times so the
        # server reuses the statement's plan.
        sql = "SELECT id FROM vector_search('py_items', %s::real[], 5) WHERE id <> 0"
        for _ in range(3):
            cur.execute(sql, ([float(x) for x in q],), prepare=True)
            check("psycopg: list of floats as %s::real[]", [r[0] for r in cur.fetchall()], [i for i in nearest(q, 6) if i != 0][:5])
        cur.execute("SELECT %s::real[] AS a", ([1.5, 0.25],), prepare=True)
        check("psycopg: real[] parameter round trip", cur.fetchall(), [([1.5, 0.25],)])
    # halfvec: pgvector-python's HalfVector in both formats; values at half precision.
    conn.execute("DROP TABLE IF EXISTS py_half")
    conn.execute("CREATE TABLE py_half (id bigint PRIMARY KEY, embedding halfvec(4))")
    register_vector(conn)  # again: it registers halfvec now that the type exists
    halves = {i: v.astype(np.float16) for i, v in VECS.items()}
    with conn.cursor(binary=True) as cur:
        cur.executemany(
            "INSERT INTO py_half VALUES (%s, %s)",
            [(i, HalfVector(v)) for i, v in VECS.items()],
        )
    qh = q.astype(np.float16).astype(np.float32)
    want = sorted(halves, key=lambda i: float(np.linalg.norm(halves[i].astype(np.float32) - qh)))[:5]
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(
                "SELECT id, embedding FROM py_half ORDER BY embedding <-> %s LIMIT 5",
                (HalfVector(q),),
                prepare=True,
            )
            rows = cur.fetchall()
            check(f"psycopg binary={binary}: halfvec search", [r[0] for r in rows], want)
            check(
                f"psycopg binary={binary}: halfvecs come back at half precision",
                all(
                    np.array_equal(np.asarray(r[1].to_numpy(), dtype=np.float16), halves[r[0]])
                    for r in rows
                ),
                True,
            )
    # sparsevec: pgvector-python's SparseVector in both formats, searched exactly.
    conn.execute("DROP TABLE IF EXISTS py_sparse")
    conn.execute("CREATE TABLE py_sparse (id bigint PRIMARY KEY, embedding sparsevec(1000))")
    register_vector(conn)
    sparse = {}
    for i in range(40):
        idx = sorted({int(x) for x in rng.integers(0, 1000, 4)})
        sparse[i] = {j: float(np.float32(rng.standard_normal())) for j in idx}
    with conn.cursor(binary=True) as cur:
        cur.executemany(
            "INSERT INTO py_sparse VALUES (%s, %s)",
            [(i, SparseVector(s, 1000)) for i, s in sparse.items()],
        )
    qs = {j: 1.0 for j in sorted({j for s in list(sparse.values())[:5] for j in s})}

    def ip(s):
        return sum(v * qs.get(j, 0.0) for j, v in s.items())

    want = sorted(sparse, key=lambda i: (-ip(sparse[i]), i))[:5]
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(
                "SELECT id, embedding FROM py_sparse ORDER BY embedding <#> %s, id LIMIT 5",
                (SparseVector(qs, 1000),),
                prepare=True,
            )
            rows = cur.fetchall()
            check(f"psycopg binary={binary}: sparsevec search by inner product", [r[0] for r in rows], want)
            check(
                f"psycopg binary={binary}: sparsevecs come back as written",
                all(
                    r[1].dimensions() == 1000
                    and {j: float(np.float32(v)) for j, v in zip(r[1].indices(), r[1].values())}
                    == sparse[r[0]]
                    for r in rows
                ),
                True,
            )
    # bit: pgvector-python's Bit in both formats; Hamming distance computed exactly.
    conn.execute("DROP TABLE IF EXISTS py_bits")
    conn.execute("CREATE TABLE py_bits (id bigint PRIMARY KEY, embedding bit(12))")
    bits = {i: "".join("1" if x else "0" for x in rng.integers(0, 2, 12)) for i in range(40)}
    with conn.cursor(binary=True) as cur:
        cur.executemany("INSERT INTO py_bits VALUES (%s, %s)", [(i, Bit(b)) for i, b in bits.items()])
    qb = "".join("1" if x else "0" for x in rng.integers(0, 2, 12))
    want = sorted(bits, key=lambda i: (sum(a != b for a, b in zip(bits[i], qb)), i))[:5]
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(
                "SELECT id, embedding FROM py_bits ORDER BY embedding <~> %s, id LIMIT 5",
                (Bit(qb),),
                prepare=True,
            )
            rows = cur.fetchall()
            check(f"psycopg binary={binary}: bit search by Hamming distance", [r[0] for r in rows], want)
            check(
                f"psycopg binary={binary}: bits come back as written",
                # (psycopg reads bit's text as a str and its binary form as bytes,
                # which pgvector's Bit reads)
                all(
                    (Bit.from_binary(r[1]).to_text() if binary else r[1]) == bits[r[0]]
                    for r in rows
                ),
                True,
            )
    # Arrays of arrays (LangGraph's checkpointer reads `array_agg(array[a::bytea, b])`):
    # Postgres' multi-dimensional arrays, in both formats.
    conn.execute("DROP TABLE IF EXISTS py_blobs")
    conn.execute("CREATE TABLE py_blobs (id int PRIMARY KEY, tag text NOT NULL, body bytea)")
    blobs = {1: ("a", b"\x00\x01"), 2: ("b \"q\"", b"plain"), 3: ("c", None)}
    conn.execute(
        "INSERT INTO py_blobs VALUES " + ", ".join(["(%s, %s, %s)"] * len(blobs)),
        [x for i, (t, b) in blobs.items() for x in (i, t, b)],
    )
    for binary in (False, True):
        with conn.cursor(binary=binary) as cur:
            cur.execute(
                "SELECT array_agg(array[tag::bytea, body] ORDER BY id), "
                "array_agg(array[tag, id::text] ORDER BY id), array[[1, 2], [3, 4]] FROM py_blobs "
                "WHERE id > %s",
                (0,),
                prepare=True,
            )
            got = cur.fetchone()
            check(
                f"psycopg binary={binary}: arrays of arrays (bytea, text, int)",
                ([[bytes(x) if x is not None else None for x in r] for r in got[0]], got[1], got[2]),
                (
                    [[t.encode(), b] for t, b in blobs.values()],
                    [[t, str(i)] for i, (t, _) in blobs.items()],
                    [[1, 2], [3, 4]],
                ),
            )
    conn.autocommit = False
    with conn.transaction():
        with conn.transaction():  # a savepoint
            conn.execute("UPDATE py_items SET name = 'renamed' WHERE id = 3")
    check("psycopg: nested transactions", conn.execute("SELECT name FROM py_items WHERE id = 3").fetchone()[0], "renamed")
    conn.close()


def psycopg_2():
    conn = psycopg2.connect(URL)
    conn.autocommit = True
    register_vector2(conn)
    cur = conn.cursor()
    q = rng.standard_normal(4).astype(np.float32)
    cur.execute("SELECT id, embedding FROM py_items ORDER BY embedding <-> %s LIMIT 3", (q,))
    rows = cur.fetchall()
    check("psycopg2: pgvector search", [r[0] for r in rows], nearest(q, 3))
    check("psycopg2: vector type", all(np.allclose(r[1].to_numpy(), VECS[r[0]]) for r in rows), True)
    cur.execute("SELECT id FROM vector_search('py_items', %s, 3) WHERE id < %s ORDER BY distance", (q, 20))
    check("psycopg2: filtered search", [r[0] for r in cur.fetchall()], nearest(q, 3, [i for i in VECS if i < 20]))
    conn.close()


def sqlalchemy():
    engine = create_engine(URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.connect() as c:
        check("sqlalchemy: version()", c.execute(text("select version()")).scalar().startswith("PostgreSQL 16"), True)
    with engine.begin() as c:
        c.execute(text("UPDATE py_items SET name = :name WHERE id = :id"), {"name": "sa", "id": 5})
        n = c.execute(text("SELECT count(*) FROM py_items WHERE id < :n"), {"n": 10}).scalar()
    check("sqlalchemy: bound parameters in a transaction", n, 10)
    with engine.connect() as c:
        check("sqlalchemy: committed", c.execute(text("SELECT name FROM py_items WHERE id = 5")).scalar(), "sa")
    check("sqlalchemy: inspect().get_table_names()", "py_items" in inspect(engine).get_table_names(), True)
    columns = {c["name"]: c for c in inspect(engine).get_columns("py_items")}
    check("sqlalchemy: inspect().get_columns() names", list(columns), ["id", "name", "embedding"])
    check("sqlalchemy: column types", [type(columns[n]["type"]).__name__ for n in columns], ["BIGINT", "TEXT", "VECTOR"])
    check("sqlalchemy: nullability", [columns[n]["nullable"] for n in columns], [False, True, True])
    pk = inspect(engine).get_pk_constraint("py_items")
    check("sqlalchemy: inspect().get_pk_constraint()", (pk["name"], pk["constrained_columns"]), ("py_items_pkey", ["id"]))

    # What Superset's database browser asks SQLAlchemy's inspector for.
    insp = inspect(engine)
    check("superset: get_schema_names()", insp.get_schema_names(), ["information_schema", "public"])
    check("superset: default schema", insp.default_schema_name, "public")
    check("superset: get_view_names()", insp.get_view_names("public"), [])
    check("superset: get_materialized_view_names()", insp.get_materialized_view_names("public"), [])
    check("superset: get_table_comment()", insp.get_table_comment("py_items", "public"), {"text": None})
    check("superset: get_foreign_keys()", insp.get_foreign_keys("py_items", "public"), [])
    check("superset: get_indexes()", insp.get_indexes("py_items", "public"), [])
    check("superset: has_table()", (insp.has_table("py_items", "public"), insp.has_table("nope", "public")), (True, False))
    multi = insp.get_multi_columns("public")
    check("superset: get_multi_columns()", [c["name"] for c in multi[("public", "py_items")]], ["id", "name", "embedding"])

    # The ORM with pgvector's Vector type: create_all, insert, ordered and filtered selects.
    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "orm_items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        name: Mapped[str] = mapped_column(String)
        embedding = mapped_column(Vector(4))

    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS orm_items"))
    Base.metadata.create_all(engine)
    q = rng.standard_normal(4).astype(np.float32)
    with Session(engine) as s:
        s.add_all([Item(id=i, name=f"o{i}", embedding=v) for i, v in VECS.items()])
        s.commit()
        got = s.scalars(select(Item).order_by(Item.embedding.l2_distance(q)).limit(4)).all()
        check("sqlalchemy ORM: Vector l2_distance ordering", [g.id for g in got], nearest(q, 4))
        check("sqlalchemy ORM: filter", s.scalars(select(Item).filter(Item.name == "o9")).one().id, 9)


def sqlalchemy_arrays():
    """SQLAlchemy 2's `ARRAY` columns (floats, integers, strings of a limited length,
    UUIDs, datetimes, decimals) through the ORM: create_all, rows written and read back
    exactly, `contains`, `contained_by`, `overlap`, `any()`, an index, `array_length`,
    and an update of a whole array; every answer against an oracle computed here."""
    import datetime
    import decimal
    import uuid

    from sqlalchemy import DateTime, Float, Integer, Numeric, func, update
    from sqlalchemy.dialects.postgresql import ARRAY, UUID

    class Base(DeclarativeBase):
        pass

    class Reading(Base):
        __tablename__ = "sa_readings"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        values = mapped_column(ARRAY(Float), nullable=False)
        counts = mapped_column(ARRAY(Integer))
        labels = mapped_column(ARRAY(String(12)), nullable=False)
        sensors = mapped_column(ARRAY(UUID(as_uuid=True)), nullable=False)
        times = mapped_column(ARRAY(DateTime(timezone=True)), nullable=False)
        prices = mapped_column(ARRAY(Numeric(6, 2)), nullable=False)

    utc = datetime.timezone.utc
    words = ["north", "south", "east", "west", "up down", 'say "hi"']

    def row(i):
        return {
            "id": i,
            "values": [i * 0.1, -i / 7, 1e10 + i][: i % 3 + 1],
            "counts": None if i % 4 == 0 else list(range(i % 4)),
            "labels": [words[(i + j) % len(words)] for j in range(i % 3)],
            "sensors": [uuid.UUID(int=i * 31 + j) for j in range(1 + i % 2)],
            "times": [datetime.datetime(2025, 1 + i % 12, 1 + i % 27, 12, 0, i % 60, 250 * i, tzinfo=utc)],
            "prices": [decimal.Decimal(f"{i}.25"), decimal.Decimal("-1.00")][: 1 + i % 2],
        }

    engine = create_engine(URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS sa_readings"))
    Base.metadata.create_all(engine)
    model = {i: row(i) for i in range(30)}
    fields = ["values", "counts", "labels", "sensors", "times", "prices"]
    with Session(engine) as s:
        s.add_all([Reading(**r) for r in model.values()])
        s.commit()
    with Session(engine) as s:
        got = {r.id: {"id": r.id, **{f: getattr(r, f) for f in fields}} for r in s.scalars(select(Reading))}
        check("sqlalchemy ARRAY: every array reads back as written", got, model)

        def ids(where):
            return sorted(s.scalars(select(Reading.id).where(where)))

        def want(pred):
            return sorted(i for i, r in model.items() if pred(r))

        check("sqlalchemy ARRAY: labels.contains", ids(Reading.labels.contains(["east"])),
              want(lambda r: "east" in r["labels"]))
        check("sqlalchemy ARRAY: labels.contained_by", ids(Reading.labels.contained_by(["north", "south"])),
              want(lambda r: set(r["labels"]) <= {"north", "south"}))
        check("sqlalchemy ARRAY: labels.overlap", ids(Reading.labels.overlap(["west", 'say "hi"'])),
              want(lambda r: bool({"west", 'say "hi"'} & set(r["labels"]))))
        check("sqlalchemy ARRAY: counts.any(2)", ids(Reading.counts.any(2)),
              want(lambda r: r["counts"] is not None and 2 in r["counts"]))
        sensor = uuid.UUID(int=7 * 31 + 1)
        check("sqlalchemy ARRAY: sensors.any(a UUID)", ids(Reading.sensors.any(sensor)),
              want(lambda r: sensor in r["sensors"]))
        check("sqlalchemy ARRAY: values[1] (an index)", ids(Reading.values[1] > 1.5),
              want(lambda r: r["values"][0] > 1.5))
        check("sqlalchemy ARRAY: array_length", ids(func.array_length(Reading.values, 1) == 3),
              want(lambda r: len(r["values"]) == 3))
        check("sqlalchemy ARRAY: prices.contains a Decimal", ids(Reading.prices.contains([decimal.Decimal("-1.00")])),
              want(lambda r: decimal.Decimal("-1.00") in r["prices"]))
        s.execute(update(Reading).where(Reading.id < 3).values(values=[2.5, 0.125], labels=["new"]))
        s.commit()
        for i in range(3):
            model[i]["values"], model[i]["labels"] = [2.5, 0.125], ["new"]
        got = {r.id: {"id": r.id, **{f: getattr(r, f) for f in fields}} for r in s.scalars(select(Reading))}
        check("sqlalchemy ARRAY: an update of whole arrays", got, model)


def pgvector_app():
    """pgvector-python's README example, unchanged but for the connection string."""
    conn = psycopg.connect(URL, autocommit=True)
    conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
    register_vector(conn)
    conn.execute("DROP TABLE IF EXISTS items")
    conn.execute("CREATE TABLE items (id bigserial PRIMARY KEY, embedding vector(3))")
    embedding = np.array([1, 2, 3])
    conn.execute("INSERT INTO items (embedding) VALUES (%s)", (embedding,))
    others = [np.array([3, 1, 2]), np.array([9, 9, 9]), np.array([1, 2, 4])]
    conn.execute("INSERT INTO items (embedding) VALUES (%s), (%s), (%s)", tuple(others))
    conn.execute("CREATE INDEX ON items USING hnsw (embedding vector_l2_ops)")
    rows = conn.execute("SELECT id, embedding FROM items ORDER BY embedding <-> %s LIMIT 5", (embedding,)).fetchall()
    want = sorted([embedding] + others, key=lambda v: float(np.linalg.norm(v - embedding)))
    check("pgvector app: nearest neighbours", [r[1].to_list() for r in rows], [v.astype(float).tolist() for v in want])
    check("pgvector app: bigserial keys are unique", len({r[0] for r in rows}), 4)
    dists = [r[0] for r in conn.execute("SELECT embedding <-> %s AS d FROM items ORDER BY d", (embedding,)).fetchall()]
    check("pgvector app: distances", [round(d, 6) for d in dists],
          [round(float(np.linalg.norm(v - embedding)), 6) for v in want])
    conn.close()


def write_flows():
    """The write flows of the drivers and the ORM: transactions that commit or roll back
    (nested ones as savepoints), RETURNING, and upserts, each checked from a second
    connection that must not see uncommitted work."""
    other = psycopg.connect(URL, autocommit=True)

    def names():
        return dict(other.execute("SELECT id, name FROM wf_items").fetchall())

    conn = psycopg.connect(URL)  # not autocommit: psycopg opens a block itself
    register_vector(conn)
    conn.execute("DROP TABLE IF EXISTS wf_items")
    conn.execute("CREATE TABLE wf_items (id bigint PRIMARY KEY, name text, embedding vector(4)) WITH (distance = 'l2')")
    conn.commit()
    conn.execute("INSERT INTO wf_items VALUES (1, 'a', %s), (2, 'b', %s)", (VECS[1], VECS[2]))
    check("psycopg: status inside the implicit block", conn.info.transaction_status, psycopg.pq.TransactionStatus.INTRANS)
    check("psycopg: uncommitted rows are invisible to others", names(), {})
    conn.commit()
    check("psycopg: committed rows", names(), {1: "a", 2: "b"})
    conn.execute("UPDATE wf_items SET name = 'lost' WHERE id = 1")
    conn.rollback()
    check("psycopg: conn.rollback() undoes", names(), {1: "a", 2: "b"})
    conn.autocommit = True

    class Undo(Exception):
        pass

    with conn.transaction():
        conn.execute("INSERT INTO wf_items VALUES (3, 'c', %s)", (VECS[3],))
        try:
            with conn.transaction():  # a savepoint, rolled back
                conn.execute("DELETE FROM wf_items WHERE id = 1")
                conn.execute("INSERT INTO wf_items VALUES (4, 'd', %s)", (VECS[4],))
                raise Undo()
        except Undo:
            pass
        q = VECS[4]
        seen = [r[0] for r in conn.execute("SELECT id FROM wf_items ORDER BY embedding <-> %s LIMIT 3", (q,))]
        check("psycopg: a search inside the block sees its own rows only", seen, nearest(q, 3, [1, 2, 3]))
        check("psycopg: others see nothing yet", names(), {1: "a", 2: "b"})
    check("psycopg: conn.transaction() with a nested savepoint rolled back", names(), {1: "a", 2: "b", 3: "c"})
    try:
        with conn.transaction():
            conn.execute("INSERT INTO wf_items VALUES (5, 'e', %s)", (VECS[5],))
            conn.execute("INSERT INTO wf_items VALUES (1, 'dup', %s)", (VECS[1],))
    except psycopg.errors.UniqueViolation:
        pass
    check("psycopg: a block that failed is rolled back", names(), {1: "a", 2: "b", 3: "c"})
    check("psycopg: and the connection is idle again", conn.info.transaction_status, psycopg.pq.TransactionStatus.IDLE)
    # A data-modifying WITH with parameters (prepared), as LangGraph's store refreshes TTLs.
    sql = ("WITH passed_in AS (SELECT unnest(%s::text[]) AS k), touched AS ("
           "UPDATE wf_items w SET name = w.name || '+' FROM passed_in p WHERE w.name = p.k RETURNING w.id) "
           "SELECT id FROM touched ORDER BY id")
    got = [r[0] for r in conn.execute(sql, (["a", "c", "zz"],), prepare=True).fetchall()]
    check("psycopg: a data-modifying WITH returns what it changed", (got, names()), ([1, 3], {1: "a+", 2: "b", 3: "c+"}))
    conn.execute("UPDATE wf_items SET name = rtrim(name, '+')")
    conn.close()

    conn2 = psycopg2.connect(URL)
    cur = conn2.cursor()
    cur.execute("INSERT INTO wf_items (id, name) VALUES (%s, %s) RETURNING id, name", (6, "f"))
    check("psycopg2: INSERT ... RETURNING", cur.fetchall(), [(6, "f")])
    conn2.rollback()
    check("psycopg2: conn.rollback()", 6 in names(), False)
    cur.execute("INSERT INTO wf_items (id, name) VALUES (6, 'f')")
    conn2.commit()
    check("psycopg2: conn.commit()", names().get(6), "f")
    conn2.close()

    # SQLAlchemy: Core upserts and RETURNING in ORM sessions, session.rollback().
    from sqlalchemy import insert
    from sqlalchemy.dialects.postgresql import insert as pg_insert

    class Base(DeclarativeBase):
        pass

    class Doc(Base):
        __tablename__ = "wf_items"
        id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
        name: Mapped[str] = mapped_column(String)
        embedding = mapped_column(Vector(4))

    engine = create_engine(URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with Session(engine) as s:
        got = s.execute(insert(Doc).values(id=7, name="g", embedding=VECS[7]).returning(Doc.id, Doc.name)).all()
        check("sqlalchemy ORM: insert().returning()", [tuple(r) for r in got], [(7, "g")])
        s.add(Doc(id=8, name="h", embedding=VECS[8]))
        s.flush()
        check("sqlalchemy ORM: flushed rows are the session's own", (s.get(Doc, 8).name, 8 in names()), ("h", False))
        s.rollback()
    check("sqlalchemy ORM: session.rollback()", (7 in names(), 8 in names()), (False, False))
    with Session(engine) as s:
        stmt = pg_insert(Doc).values([{"id": 1, "name": "a2"}, {"id": 9, "name": "i"}])
        stmt = stmt.on_conflict_do_update(index_elements=[Doc.id], set_={"name": stmt.excluded.name})
        s.execute(stmt)
        s.execute(pg_insert(Doc).values(id=2, name="ignored").on_conflict_do_nothing())
        doc = s.get(Doc, 3)
        doc.name = "c2"
        s.commit()
    check("sqlalchemy ORM: on_conflict_do_update, do_nothing, attribute change, commit",
          names(), {1: "a2", 2: "b", 3: "c2", 6: "f", 9: "i"})
    other.close()


def sqlalchemy_orm_app():
    """An ORM application's models as SQLAlchemy 2 writes them: integer keys (SERIAL),
    a JSONB column, a relationship over a foreign key, pgvector's Vector; flushes that
    read keys back through RETURNING, `->>` filters, an upsert, a rollback, a cascade."""
    from sqlalchemy import ForeignKey, Integer, delete, exc, func
    from sqlalchemy.dialects.postgresql import JSONB
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.orm import relationship, selectinload

    class Base(DeclarativeBase):
        pass

    class Author(Base):
        __tablename__ = "sa_authors"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)  # SERIAL
        name: Mapped[str] = mapped_column(String, unique=True)
        articles: Mapped[list["Article"]] = relationship(back_populates="author", cascade="all, delete-orphan")

    class Article(Base):
        __tablename__ = "sa_articles"
        id: Mapped[int] = mapped_column(Integer, primary_key=True)
        author_id: Mapped[int] = mapped_column(ForeignKey("sa_authors.id"))
        title: Mapped[str] = mapped_column(String)
        meta: Mapped[dict] = mapped_column(JSONB)
        embedding = mapped_column(Vector(4))
        author: Mapped[Author] = relationship(back_populates="articles")

    engine = create_engine(URL.replace("postgresql://", "postgresql+psycopg://", 1))
    with engine.begin() as c:
        c.execute(text("DROP TABLE IF EXISTS sa_articles"))
        c.execute(text("DROP TABLE IF EXISTS sa_authors"))
    Base.metadata.create_all(engine)
    columns = {c["name"]: c for c in inspect(engine).get_columns("sa_authors")}
    check("sqlalchemy app: SERIAL key has its sequence default", "nextval(" in str(columns["id"]["default"]), True)

    kinds = ["news", "essay", "review"]
    articles = {}  # title -> (author, meta, vector)
    with Session(engine) as s:
        authors = [Author(name=f"author{a}") for a in range(3)]
        for i in range(30):
            meta = {"kind": kinds[i % 3], "words": 100 * i, "lang": "en" if i % 4 else "de"}
            articles[f"t{i}"] = (f"author{i % 3}", meta, VECS[i])
            authors[i % 3].articles.append(Article(title=f"t{i}", meta=meta, embedding=VECS[i]))
        s.add_all(authors)
        s.flush()  # INSERT ... RETURNING id: keys come from the sequences
        ids = sorted(a.id for a in authors)
        check("sqlalchemy app: flush reads SERIAL keys back (RETURNING)", ids, [1, 2, 3])
        check("sqlalchemy app: children get the parent's key", {a.author_id for a in authors[1].articles}, {authors[1].id})
        s.commit()

    q = rng.standard_normal(4).astype(np.float32)

    def nearest_titles(keep, k=5):
        passing = [t for t, (_, m, _) in articles.items() if keep(m)]
        return sorted(passing, key=lambda t: float(np.linalg.norm(articles[t][2] - q)))[:k]

    with Session(engine) as s:
        got = s.scalars(
            select(Article).where(Article.meta["kind"].astext == "essay").order_by(Article.embedding.l2_distance(q)).limit(5)
        ).all()
        check("sqlalchemy app: ->> filter with l2_distance ordering", [a.title for a in got], nearest_titles(lambda m: m["kind"] == "essay"))
        got = s.scalars(
            select(Article)
            .where(Article.meta["words"].as_integer() > 1500, Article.meta["lang"].astext == "en")
            .order_by(Article.embedding.l2_distance(q))
            .limit(5)
        ).all()
        check(
            "sqlalchemy app: a JSONB number compared (as_integer) with l2_distance ordering",
            [a.title for a in got],
            nearest_titles(lambda m: m["words"] > 1500 and m["lang"] == "en"),
        )
        got = s.execute(
            select(Author.name, Article.title)
            .join(Author.articles)
            .where(Article.meta["kind"].astext == "review")
            .order_by(Article.embedding.l2_distance(q))
            .limit(3)
        ).all()
        want = nearest_titles(lambda m: m["kind"] == "review", 3)
        check("sqlalchemy app: a join over the relationship", [tuple(r) for r in got], [(articles[t][0], t) for t in want])
        author = s.scalars(select(Author).options(selectinload(Author.articles)).where(Author.name == "author2")).one()
        check("sqlalchemy app: selectinload of a relationship", sorted(a.title for a in author.articles), sorted(t for t, v in articles.items() if v[0] == "author2"))
        counts = dict(s.execute(select(Author.name, func.count(Article.id)).join(Author.articles).group_by(Author.name)).all())
        check("sqlalchemy app: count per author", counts, {"author0": 10, "author1": 10, "author2": 10})

    # A child of no parent: IntegrityError, and the session goes on after rollback.
    with Session(engine) as s:
        s.add(Article(author_id=999, title="orphan", meta={}, embedding=VECS[0]))
        try:
            s.flush()
            check("sqlalchemy app: a missing parent is refused", "accepted", "IntegrityError")
        except exc.IntegrityError as e:
            check("sqlalchemy app: a missing parent is an IntegrityError (23503)", e.orig.sqlstate, "23503")
        s.rollback()
        check("sqlalchemy app: the session goes on", s.scalar(select(func.count()).select_from(Article)), 30)

    # An upsert on the unique name; a rolled-back change; an ORM cascade delete.
    with Session(engine) as s:
        stmt = pg_insert(Author).values(name="author0")
        s.execute(stmt.on_conflict_do_update(index_elements=[Author.name], set_={"name": stmt.excluded.name + "!"}))
        s.commit()
        check("sqlalchemy app: on_conflict_do_update on a unique column", s.scalar(select(func.count()).select_from(Author)), 3)
        author = s.scalars(select(Author).where(Author.name == "author0!")).one()
        author.articles[0].meta = {"kind": "draft"}
        s.flush()
        s.rollback()
        check("sqlalchemy app: session.rollback() undoes a JSONB change", s.scalar(select(func.count()).where(Article.meta["kind"].astext == "draft")), 0)
        author = s.scalars(select(Author).where(Author.name == "author0!")).one()
        s.delete(author)
        s.commit()
        left = s.scalars(select(Article.title)).all()
        check("sqlalchemy app: delete cascades to the children (ORM cascade)", sorted(left), sorted(t for t, v in articles.items() if v[0] != "author0"))
        s.execute(delete(Article).where(Article.meta["lang"].astext == "de"))
        s.commit()
        check("sqlalchemy app: a bulk delete with a ->> filter", s.scalar(select(func.count()).select_from(Article)), sum(1 for v in articles.values() if v[0] != "author0" and v[1]["lang"] == "en"))


async def asyncpg_checks():
    conn = await asyncpg.connect(URL)
    check("asyncpg: a query", await conn.fetchval("SELECT 40 + 2"), 42)
    # Arrays and casts make asyncpg introspect types with its own catalog query.
    check("asyncpg: int4[] parameter", await conn.fetchval("SELECT $1::int4[]", [1, 2, 3]), [1, 2, 3])
    check("asyncpg: text[] parameter", await conn.fetchval("SELECT $1::text[]", ["a", "b"]), ["a", "b"])
    await conn.execute("DROP TABLE IF EXISTS apg_items")
    await conn.execute(
        "CREATE TABLE apg_items (id bigint PRIMARY KEY, tags text[], embedding vector(4)) WITH (distance = 'l2')"
    )
    # The vector column's parameter is described as `vector`, as Postgres does: without
    # pgvector's codec asyncpg sends its text form.
    await conn.execute("INSERT INTO apg_items VALUES ($1, $2, $3)", 100, [], "[1,2,3,4]")
    check("asyncpg: a vector parameter in text", await conn.fetchval("SELECT embedding::text FROM apg_items WHERE id = 100"), "[1,2,3,4]")
    await conn.execute("DELETE FROM apg_items WHERE id = 100")
    await register_vector_asyncpg(conn)
    await conn.executemany(
        "INSERT INTO apg_items VALUES ($1, $2, $3)",
        [(i, [f"t{i % 3}"], VECS[i]) for i in range(20)],
    )
    check("asyncpg: executemany", await conn.fetchval("SELECT count(*) FROM apg_items"), 20)
    check("asyncpg: arrays come back", await conn.fetchval("SELECT tags FROM apg_items WHERE id = $1", 4), ["t1"])
    q = rng.standard_normal(4).astype(np.float32)
    rows = await conn.fetch("SELECT id, embedding FROM apg_items ORDER BY embedding <-> $1 LIMIT 3", q)
    check("asyncpg: pgvector search", [r["id"] for r in rows], nearest(q, 3, list(range(20))))
    check("asyncpg: vector type", all(np.allclose(r["embedding"].to_numpy(), VECS[r["id"]]) for r in rows), True)
    stmt = await conn.prepare("SELECT id FROM vector_search('apg_items', $1, $2) WHERE id < $3 ORDER BY distance")
    got = [r["id"] for r in await stmt.fetch(q, 3, 10)]
    check("asyncpg: prepared filtered search", got, nearest(q, 3, list(range(10))))
    try:
        await conn.execute("SELECT * FROM nosuch")
        check("asyncpg: an error", "no error", "UndefinedTableError")
    except asyncpg.exceptions.UndefinedTableError:
        check("asyncpg: an error", True, True)
    check("asyncpg: the connection survives", await conn.fetchval("SELECT 1::int4"), 1)
    await conn.close()


psycopg3()
psycopg_2()
asyncio.run(asyncpg_checks())
pgvector_app()
sqlalchemy()
sqlalchemy_orm_app()
sqlalchemy_arrays()
write_flows()
print("python clients: all checks passed")
