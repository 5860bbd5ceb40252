"""Django with pgvector-python's Django support, against a running vectorgate
(VECTORGATE_URL), as their documentation shows: `makemigrations` and `migrate` (twice)
for a model with a `VectorField`, an `HnswIndex`, a unique field, a JSONField and a
foreign key (`djangoapp/models.py`); then `objects.create`, `bulk_create`,
`update_or_create`, `transaction.atomic()` rolled back (also a nested one), a unique
violation as IntegrityError, `L2Distance`/`CosineDistance` ordering with filters and
annotations, JSONField lookups, and deletes that cascade to the foreign key; a model
with a `HalfVectorField` (`djangohalf/models.py`) written, read back and searched; fields'
types changed by AlterField migrations (IntegerField to BigIntegerField; the key from
BigAutoField to AutoField and back).

Every answer is compared with an oracle computed here from what the program wrote.
Steps vectorgate cannot do yet are expected failures (`xfail`): the run fails if one of
them starts to pass, so that it is turned into a check. Exits non-zero on the first
failure."""

import io
import math
import os
import struct
import sys
import tempfile
from urllib.parse import urlparse

import django
from django.conf import settings

URL = urlparse(os.environ["VECTORGATE_URL"])

# Migrations are written into a scratch package, not into the source tree.
scratch = tempfile.mkdtemp()
for pkg in ("vg_migrations", "vg_half_migrations"):
    os.makedirs(os.path.join(scratch, pkg))
    open(os.path.join(scratch, pkg, "__init__.py"), "w").close()
sys.path.insert(0, scratch)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

settings.configure(
    INSTALLED_APPS=["djangoapp", "djangohalf"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": URL.path.lstrip("/"),
            "USER": URL.username,
            "HOST": URL.hostname,
            "PORT": URL.port,
        }
    },
    MIGRATION_MODULES={"djangoapp": "vg_migrations", "djangohalf": "vg_half_migrations"},
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    USE_TZ=True,
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.db import IntegrityError, connection, transaction  # noqa: E402
from pgvector import HalfVector  # noqa: E402
from pgvector.django import CosineDistance, L2Distance  # noqa: E402

from djangoapp.models import Chunk, Document  # noqa: E402
from djangohalf.models import HalfItem  # noqa: E402


def check(name, got, want):
    if got != want:
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   django: {name}")


def catalog(sql, params=()):
    with connection.cursor() as c:
        c.execute(sql, params)
        return c.fetchall()


def vec(i):
    return [float(i % 7), float((i * 3) % 5), float(i % 2) + 0.5]


def l2(a, b):
    return math.sqrt(sum((x - y) ** 2 for x, y in zip(a, b)))


def cosine(a, b):
    dot = sum(x * y for x, y in zip(a, b))
    return 1 - dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


# --- set-up: makemigrations and migrate, twice
call_command("makemigrations", "djangoapp", verbosity=0)
call_command("migrate", "djangoapp", verbosity=0)
call_command("migrate", "djangoapp", verbosity=0)
check(
    "migrate made the tables",
    sorted(
        r[0]
        for r in catalog(
            "SELECT table_name FROM information_schema.tables WHERE table_name LIKE 'djangoapp%%'"
        )
    ),
    ["djangoapp_chunk", "djangoapp_document"],
)
applied = catalog("SELECT app, name FROM django_migrations WHERE app = 'djangoapp'")
check("django_migrations records the migration once", applied, [("djangoapp", "0001_initial")])
indexes = dict(
    catalog("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'djangoapp_document'")
)
check(
    "the HnswIndex is listed as Postgres lists it",
    indexes.get("doc_embedding_idx"),
    "CREATE INDEX doc_embedding_idx ON public.djangoapp_document USING hnsw "
    "(embedding vector_l2_ops) WITH (m='16', ef_construction='64')",
)
check(
    "the unique title: its constraint's index and Django's varchar_pattern_ops index",
    sorted(n.rsplit("_", 1)[1] for n in indexes if "title" in n),
    ["key", "like"],
)
check(
    "the pattern index's definition",
    [d.split(" USING ")[1] for n, d in indexes.items() if n.endswith("_like")],
    ["btree (title varchar_pattern_ops)"],
)
fks = catalog(
    "SELECT conname FROM pg_constraint WHERE contype = 'f' AND conrelid = "
    "(SELECT oid FROM pg_class WHERE relname = 'djangoapp_chunk')"
)
check("the foreign key is a constraint", len(fks), 1)
call_command("makemigrations", "djangohalf", verbosity=0)
call_command("migrate", "djangohalf", verbosity=0)
check(
    "a HalfVectorField is a halfvec column",
    catalog(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'embedding' "
        "AND attrelid = (SELECT oid FROM pg_class WHERE relname = 'djangohalf_halfitem')"
    ),
    [("halfvec(3)",)],
)

# --- writes
model = {}  # title -> (category, meta, embedding)
first = Document.objects.create(title="d0", embedding=vec(0), meta={"n": 0, "tags": ["a"]})
model["d0"] = ("misc", {"n": 0, "tags": ["a"]}, vec(0))
check("create returns the generated id", Document.objects.get(title="d0").id, first.id)
made = Document.objects.bulk_create(
    [
        Document(
            title=f"d{i}",
            category=["news", "blog", "misc"][i % 3],
            meta={"n": i, "tags": ["a", "b"] if i % 2 else ["c"]},
            embedding=vec(i),
        )
        for i in range(1, 30)
    ]
)
for i in range(1, 30):
    model[f"d{i}"] = (["news", "blog", "misc"][i % 3], {"n": i, "tags": ["a", "b"] if i % 2 else ["c"]}, vec(i))
check("bulk_create returns the ids (RETURNING)", all(d.id for d in made), True)
check("ids are distinct", len({d.id for d in made} | {first.id}), 30)
doc, created = Document.objects.update_or_create(title="d1", defaults={"category": "blog"})
model["d1"] = ("blog",) + model["d1"][1:]
check("update_or_create of an existing row", (created, doc.category), (False, "blog"))
doc, created = Document.objects.update_or_create(
    title="d30", defaults={"category": "news", "embedding": vec(30), "meta": {"n": 30}}
)
model["d30"] = ("news", {"n": 30}, vec(30))
check("update_or_create of a new row", created, True)


class Rollback(Exception):
    pass


try:
    with transaction.atomic():
        Document.objects.create(title="gone", embedding=vec(99))
        Document.objects.filter(title="d2").update(category="changed")
        raise Rollback
except Rollback:
    pass
check("atomic() rolled back: no row", Document.objects.filter(title="gone").exists(), False)
check("atomic() rolled back: no update", Document.objects.get(title="d2").category, model["d2"][0])
with transaction.atomic():
    Document.objects.create(title="kept", embedding=vec(31))
    try:
        with transaction.atomic():  # a savepoint
            Document.objects.create(title="inner", embedding=vec(32))
            raise Rollback
    except Rollback:
        pass
model["kept"] = ("misc", {}, vec(31))
check(
    "a nested atomic() rolls back to its savepoint only",
    sorted(Document.objects.filter(title__in=["kept", "inner"]).values_list("title", flat=True)),
    ["kept"],
)
try:
    with transaction.atomic():
        Document.objects.create(title="d3", embedding=vec(3))
    check("a duplicate title is refused", False, True)
except IntegrityError:
    check("a duplicate title is an IntegrityError", True, True)
check("the connection goes on after it", Document.objects.count(), len(model))

# --- searches against the oracle
q = [1.0, 2.0, 0.5]
got = list(
    Document.objects.filter(category="news").order_by(L2Distance("embedding", q)).values_list("title", flat=True)[:5]
)
want = sorted((t for t, m in model.items() if m[0] == "news"), key=lambda t: (l2(model[t][2], q), t))[:5]
check("L2Distance ordering with a filter", [round(l2(model[t][2], q), 6) for t in got], [round(l2(model[t][2], q), 6) for t in want])
got = list(
    Document.objects.annotate(d=CosineDistance("embedding", q)).order_by("d").values_list("title", "d")[:5]
)
want = sorted(model, key=lambda t: cosine(model[t][2], q))[:5]
check(
    "CosineDistance annotation",
    [round(d, 5) for _, d in got],
    [round(cosine(model[t][2], q), 5) for t in want],
)
check(
    "a JSONField key lookup",
    sorted(Document.objects.filter(meta__n__gte=25).values_list("title", flat=True)),
    sorted(t for t, m in model.items() if m[1].get("n", -1) >= 25),
)
check(
    "a JSONField contains lookup",
    sorted(Document.objects.filter(meta__tags__contains=["b"]).values_list("title", flat=True)),
    sorted(t for t, m in model.items() if "b" in m[1].get("tags", [])),
)

# --- a foreign key, and deletes that cascade
d5 = Document.objects.get(title="d5")
Chunk.objects.bulk_create([Chunk(document=d5, n=i) for i in range(3)])
Chunk.objects.create(document=Document.objects.get(title="d6"), n=0)
check("related rows", sorted(d5.chunks.values_list("n", flat=True)), [0, 1, 2])
Document.objects.filter(title="d5").delete()
del model["d5"]
check("delete cascades to the chunks", Chunk.objects.count(), 1)
try:
    with transaction.atomic():
        Chunk.objects.create(document_id=10**9, n=1)
    check("a chunk of no document is refused", False, True)
except IntegrityError:
    check("a chunk of no document is an IntegrityError", True, True)
check("rows left", Document.objects.count(), len(model))


# --- a HalfVectorField: values kept at half precision, searched by its own distance
def half(v):
    return [struct.unpack("e", struct.pack("e", x))[0] for x in v]


def f32(v):
    """A vector's elements as float4s (its text gives the shortest digits of each)."""
    items = v.to_list() if hasattr(v, "to_list") else list(v)
    return [struct.unpack("f", struct.pack("f", x))[0] for x in items]


halves = {}
for i in range(40):
    item = HalfItem.objects.create(embedding=[math.sin(i * 0.7) * 3.3, math.cos(i) + 0.1, i / 7])
    halves[item.id] = half([math.sin(i * 0.7) * 3.3, math.cos(i) + 0.1, i / 7])
check(
    "a halfvec reads back at half precision (pgvector's HalfVector)",
    {h.id: f32(h.embedding) for h in HalfItem.objects.all()},
    {k: f32(v) for k, v in halves.items()},
)
q = [1.1, 0.2, 2.0]
qh = half(q)
near = [
    h.id
    for h in HalfItem.objects.annotate(d=L2Distance("embedding", HalfVector(q))).order_by("d")[:5]
]
check(
    "L2Distance ordering on a halfvec (the query at half precision too)",
    near,
    sorted(halves, key=lambda k: (math.dist(halves[k], qh), k))[:5],
)
got = HalfItem.objects.annotate(d=CosineDistance("embedding", HalfVector(q))).order_by("d").first()


def cosine(a, b):
    return 1 - sum(x * y for x, y in zip(a, b)) / math.hypot(*a) / math.hypot(*b)


best = min(halves, key=lambda k: cosine(halves[k], qh))
check("CosineDistance on a halfvec: the nearest", got.id, best)
check("its distance", round(got.d, 5), round(cosine(halves[best], qh), 5))


# Django's introspection, which inspectdb and the migrations that alter or drop a
# constrained field read, answers as it does on Postgres.
intro = connection.introspection
with connection.cursor() as c:
    check(
        "get_sequences: the key's sequence",
        [s["column"] for s in intro.get_sequences(c, "djangoapp_chunk")],
        ["id"],
    )
    check(
        "get_relations: the foreign key",
        intro.get_relations(c, "djangoapp_chunk"),
        {"document_id": ("id", "djangoapp_document")},
    )
    doc = intro.get_constraints(c, "djangoapp_document")
    chunk = intro.get_constraints(c, "djangoapp_chunk")
check(
    "get_constraints: the primary key",
    [v["columns"] for v in doc.values() if v["primary_key"]],
    [["id"]],
)
check(
    "get_constraints: the unique title",
    sorted(v["columns"] for v in doc.values() if v["unique"] and not v["primary_key"]),
    [["title"]],
)
hnsw = doc.get("doc_embedding_idx") or {}
check(
    "get_constraints: the HNSW index",
    (hnsw.get("columns"), hnsw.get("type"), hnsw.get("index")),
    (["embedding"], "hnsw", True),
)
check(
    "get_constraints: the foreign key",
    [v["foreign_key"] for v in chunk.values() if v["foreign_key"]],
    [("djangoapp_document", "id")],
)
out = io.StringIO()
call_command("inspectdb", "djangoapp_document", "djangoapp_chunk", stdout=out)
models_text = out.getvalue()
for line in [
    "title = models.CharField(unique=True, max_length=100)",
    "category = models.CharField(max_length=20)",
    "class DjangoappDocument(models.Model):",
    "id = models.BigAutoField(primary_key=True)",
    "meta = models.JSONField()",
    "created = models.DateTimeField()",
    "class DjangoappChunk(models.Model):",
    "document = models.ForeignKey(DjangoappDocument, models.DO_NOTHING)",
    "n = models.IntegerField()",
]:
    check(f"inspectdb writes {line!r}", line in models_text, True)

# --- fields' types changed by migrations, as `makemigrations` writes them for a model
# whose IntegerField becomes a BigIntegerField and whose key moves from BigAutoField to
# AutoField and back: Django sends ALTER COLUMN ... TYPE ... USING for the column, the
# key and the chunks' foreign key column (dropping and adding the foreign key around it,
# with SET CONSTRAINTS), and ALTER SEQUENCE ... AS; every row is kept.
AUTO = 'models.{}(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")'
for number, previous, operations in [
    ("0002_types", "0001_initial", [
        'migrations.AlterField(model_name="chunk", name="n", field=models.BigIntegerField())',
        f'migrations.AlterField(model_name="document", name="id", field={AUTO.format("AutoField")})',
    ]),
    ("0003_big_again", "0002_types", [
        f'migrations.AlterField(model_name="document", name="id", field={AUTO.format("BigAutoField")})',
    ]),
]:
    with open(os.path.join(scratch, "vg_migrations", number + ".py"), "w") as f:
        f.write(
            "from django.db import migrations, models\n\n\n"
            "class Migration(migrations.Migration):\n"
            f"    dependencies = [('djangoapp', '{previous}')]\n"
            f"    operations = [{', '.join(operations)}]\n"
        )


def column_types():
    return catalog(
        "SELECT table_name, column_name, data_type FROM information_schema.columns"
        " WHERE (table_name, column_name) IN (('djangoapp_document', 'id'),"
        " ('djangoapp_chunk', 'document_id'), ('djangoapp_chunk', 'n')) ORDER BY 1, 2"
    )


docs_before = sorted(Document.objects.values_list("id", "title", "category"))
chunks_before = sorted(Chunk.objects.values_list("id", "document_id", "n"))
call_command("migrate", "djangoapp", "0002_types", verbosity=0)
check(
    "AlterField to BigIntegerField and AutoField: the columns' types",
    column_types(),
    [("djangoapp_chunk", "document_id", "integer"), ("djangoapp_chunk", "n", "bigint"), ("djangoapp_document", "id", "integer")],
)
check("AlterField keeps the chunks", sorted(Chunk.objects.values_list("id", "document_id", "n")), chunks_before)
check(
    "the key's sequence is integer",
    catalog("SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'djangoapp_document_id_seq'::regclass"),
    [("integer",)],
)
holder = Document.objects.order_by("id").first()
big = Chunk.objects.create(document=holder, n=2**40)
check("a bigint column holds 2**40", Chunk.objects.get(id=big.id).n, 2**40)
big.delete()
call_command("migrate", "djangoapp", verbosity=0)
check(
    "AlterField back to BigAutoField: bigint again",
    column_types(),
    [("djangoapp_chunk", "document_id", "bigint"), ("djangoapp_chunk", "n", "bigint"), ("djangoapp_document", "id", "bigint")],
)
check(
    "the key's sequence is bigint again",
    catalog("SELECT format_type(seqtypid, NULL) FROM pg_sequence WHERE seqrelid = 'djangoapp_document_id_seq'::regclass"),
    [("bigint",)],
)
check("every document kept", sorted(Document.objects.values_list("id", "title", "category")), docs_before)
check("every chunk kept", sorted(Chunk.objects.values_list("id", "document_id", "n")), chunks_before)
check(
    "the foreign key is made again",
    [v["foreign_key"] for v in connection.introspection.get_constraints(connection.cursor(), "djangoapp_chunk").values() if v["foreign_key"]],
    [("djangoapp_document", "id")],
)
fresh = Document.objects.create(title="after the type change", embedding=vec(3))
check("the key's sequence goes on", fresh.id > max(d[0] for d in docs_before), True)
with_chunk = Chunk.objects.order_by("id").first().document
with_chunk.delete()
check(
    "the foreign key still cascades",
    Chunk.objects.filter(document_id=with_chunk.id).exists(),
    False,
)
print("django: all passed")
