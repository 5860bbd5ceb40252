"""Django's `ArrayField` (django.contrib.postgres) against a running vectorgate
(VECTORGATE_URL), as Django's documentation shows it: `makemigrations` and `migrate` for
a model with arrays of strings of a limited length, floats, integers, UUIDs, datetimes,
decimals and booleans (`djangoarrays/models.py`); rows written by `create`,
`bulk_create` and `update`, read back exactly; the array lookups (`contains`,
`contained_by`, `overlap`, `len`, an index, a slice, equality) and `ArrayAgg`, each
answer compared with an oracle computed here from what the program wrote; a string
longer than its field's `max_length` cut by Django's cast or refused by the column, as
Postgres does. Exits non-zero on
the first failure."""

import datetime
import decimal
import os
import sys
import tempfile
import uuid
from urllib.parse import urlparse

import django
from django.conf import settings

URL = urlparse(os.environ["VECTORGATE_URL"])

scratch = tempfile.mkdtemp()
os.makedirs(os.path.join(scratch, "vg_array_migrations"))
open(os.path.join(scratch, "vg_array_migrations", "__init__.py"), "w").close()
sys.path.insert(0, scratch)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

settings.configure(
    INSTALLED_APPS=["django.contrib.postgres", "djangoarrays"],
    DATABASES={
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": URL.path.lstrip("/"),
            "USER": URL.username,
            "HOST": URL.hostname,
            "PORT": URL.port,
        }
    },
    MIGRATION_MODULES={"djangoarrays": "vg_array_migrations"},
    DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    USE_TZ=True,
)
django.setup()

from django.contrib.postgres.aggregates import ArrayAgg  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import DataError, connection, transaction  # noqa: E402

from djangoarrays.models import Tagged  # noqa: E402


def check(name, got, want):
    if got != want:
        if isinstance(got, dict) and isinstance(want, dict):
            keys = sorted(set(got) ^ set(want)) + [k for k in want if k in got and got[k] != want[k]]
            got, want = {k: got.get(k) for k in keys}, {k: want.get(k) for k in keys}
        print(f"FAIL {name}: got {got!r}, want {want!r}")
        sys.exit(1)
    print(f"ok   django arrays: {name}")


def catalog(sql, params=()):
    with connection.cursor() as c:
        c.execute(sql, params)
        return c.fetchall()


call_command("makemigrations", "djangoarrays", verbosity=0)
call_command("migrate", "djangoarrays", verbosity=0)
check(
    "migrate made the array columns, typed as Postgres types them",
    catalog(
        "SELECT attname, format_type(atttypid, atttypmod) FROM pg_attribute WHERE attnum > 0"
        " AND attrelid = 'djangoarrays_tagged'::regclass ORDER BY attnum"
    ),
    [
        ("id", "bigint"),
        ("name", "character varying(40)"),
        ("tags", "character varying(20)[]"),
        ("scores", "double precision[]"),
        ("counts", "integer[]"),
        ("ids", "uuid[]"),
        ("seen", "timestamp with time zone[]"),
        ("prices", "numeric(8,2)[]"),
        ("flags", "boolean[]"),
    ],
)

UTC = datetime.timezone.utc
TAGS = ["red", "green", "blue", "a b", 'quo"te', "back\\slash", "NULL", ""]


def row(i):
    """The values of row i: every array a function of i (some empty, some NULL)."""
    return {
        "name": f"t{i}",
        "tags": [TAGS[(i + j) % len(TAGS)] for j in range(i % 4)],
        "scores": [i / 3, -i * 1.25, 1e-7 * i][: i % 3 + 1],
        # (Never empty: in a CQL cluster an empty list in a column that may be NULL
        # reads back as NULL, see the README.)
        "counts": None if i % 5 == 0 else [i, i * 10, -i][: i % 3 + 1],
        "ids": [uuid.UUID(int=i * 7919 + j) for j in range(i % 3)],
        "seen": [
            datetime.datetime(2024, 1 + i % 12, 1 + i % 28, i % 24, 30, 15, 123456 * (i % 2), tzinfo=UTC)
        ]
        * (i % 2 + 1),
        "prices": [decimal.Decimal(f"{i}.{i % 100:02d}"), decimal.Decimal("-0.50")][: i % 2 + 1],
        "flags": [bool(i % 2), i % 3 == 0],
    }


model = {}
Tagged.objects.create(**row(0))
model["t0"] = row(0)
Tagged.objects.bulk_create([Tagged(**row(i)) for i in range(1, 40)])
for i in range(1, 40):
    model[f"t{i}"] = row(i)

FIELDS = ["tags", "scores", "counts", "ids", "seen", "prices", "flags"]


def stored():
    return {t.name: {f: getattr(t, f) for f in ["name"] + FIELDS} for t in Tagged.objects.all()}


check("every array reads back as written", stored(), model)


def names(qs):
    return sorted(qs.values_list("name", flat=True))


def want(pred):
    return sorted(n for n, r in model.items() if pred(r))


check("tags__contains", names(Tagged.objects.filter(tags__contains=["red"])),
      want(lambda r: "red" in r["tags"]))
check("tags__contains of two, one with a space", names(Tagged.objects.filter(tags__contains=["green", "a b"])),
      want(lambda r: {"green", "a b"} <= set(r["tags"])))
check("tags__contained_by", names(Tagged.objects.filter(tags__contained_by=["red", "green", "blue"])),
      want(lambda r: set(r["tags"]) <= {"red", "green", "blue"}))
check("tags__overlap", names(Tagged.objects.filter(tags__overlap=["blue", 'quo"te'])),
      want(lambda r: bool({"blue", 'quo"te'} & set(r["tags"]))))
check("tags__len", names(Tagged.objects.filter(tags__len=2)), want(lambda r: len(r["tags"]) == 2))
check("tags__0 (an index)", names(Tagged.objects.filter(tags__0="green")),
      want(lambda r: r["tags"][:1] == ["green"]))
check("tags__0_2 (a slice)", names(Tagged.objects.filter(tags__0_2=["blue", "a b"])),
      want(lambda r: r["tags"][:2] == ["blue", "a b"]))
check("tags equal to a list", names(Tagged.objects.filter(tags=["NULL", ""])),
      want(lambda r: r["tags"] == ["NULL", ""]))
check("tags equal to the empty list", names(Tagged.objects.filter(tags=[])), want(lambda r: r["tags"] == []))
check("counts__isnull", names(Tagged.objects.filter(counts__isnull=True)), want(lambda r: r["counts"] is None))
check("counts__contains", names(Tagged.objects.filter(counts__contains=[30])),
      want(lambda r: r["counts"] is not None and 30 in r["counts"]))
check("scores__contains a float", names(Tagged.objects.filter(scores__contains=[4 / 3])),
      want(lambda r: 4 / 3 in r["scores"]))
u = uuid.UUID(int=5 * 7919 + 1)
check("ids__contains a UUID", names(Tagged.objects.filter(ids__contains=[u])), want(lambda r: u in r["ids"]))
check("prices__contains a Decimal", names(Tagged.objects.filter(prices__contains=[decimal.Decimal("-0.50")])),
      want(lambda r: decimal.Decimal("-0.50") in r["prices"]))
when = model["t7"]["seen"][0]
check("seen__contains a datetime", names(Tagged.objects.filter(seen__contains=[when])),
      want(lambda r: when in r["seen"]))
check("flags__0", names(Tagged.objects.filter(flags__0=True)), want(lambda r: r["flags"][0]))

Tagged.objects.filter(name__in=["t1", "t2"]).update(tags=["updated", "x"], scores=[0.1, 0.2])
for n in ["t1", "t2"]:
    model[n]["tags"], model[n]["scores"] = ["updated", "x"], [0.1, 0.2]
check("update() sets arrays", stored(), model)

agg = Tagged.objects.filter(name__in=["t3", "t4", "t5"]).aggregate(names=ArrayAgg("name", ordering="name"))
check("ArrayAgg", agg["names"], ["t3", "t4", "t5"])

# Django writes an array as `%s::varchar(20)[]`: an explicit cast, which cuts each
# element to the length (as Postgres' casts do); assigning a longer one is refused.
Tagged.objects.create(name="long", tags=["x" * 25, "y"])
model["long"] = {"name": "long", "tags": ["x" * 20, "y"], "counts": None}
model["long"].update({f: [] for f in FIELDS if f not in model["long"]})
check("a tag longer than max_length, cast as Django casts it, is cut", stored(), model)
try:
    with transaction.atomic(), connection.cursor() as c:
        c.execute("UPDATE djangoarrays_tagged SET tags = %s WHERE name = 'long'", [["z" * 21]])
    check("a tag longer than the column's length is refused", False, True)
except DataError as e:
    check("a tag longer than the column's length is a DataError", e.__cause__.sqlstate, "22001")
check("the connection goes on after it", Tagged.objects.count(), len(model))
print("django arrays: all passed")
