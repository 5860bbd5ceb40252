"""Agent memory on vectorgate: LangGraph's AsyncPostgresStore, unchanged, with its
connection string pointed at vectorgate.

    pip install "langgraph-checkpoint-postgres==3.2.0" "psycopg[binary,pool]"
    cargo run --release -- serve          # or: docker compose up (ScyllaDB + Qdrant)
    DATABASE_URL=postgresql://localhost:5433/vectorgate python examples/python/agent_memory.py

With `docker compose up` the memories' rows are in ScyllaDB and their embeddings are
points in Qdrant; look at them there:

    docker compose exec scylla cqlsh -e "SELECT prefix, key, value FROM vectorgate.store"
    curl -s localhost:6333/collections/vectorgate_store_vectors/points/scroll -d '{"limit":3}'
"""

import asyncio
import hashlib
import math
import os

from langgraph.store.postgres import AsyncPostgresStore

URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5433/vectorgate")
DIMS = 64


def embed(texts):
    """A stand-in embedding (hashed bag of words) so the example runs without a model.
    A real one plugs in here, e.g. `index={"dims": 1536, "embed":
    init_embeddings("openai:text-embedding-3-small")}`."""
    out = []
    for text in texts:
        v = [0.0] * DIMS
        for word in text.lower().replace(".", " ").split():
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        out.append([x / norm for x in v])
    return out


MEMORIES = {
    "m1": ("Alice prefers tea over coffee in the morning.", "preference"),
    "m2": ("Alice is allergic to peanuts.", "health"),
    "m3": ("Alice's coffee shop is on Main Street.", "preference"),
    "m4": ("Alice runs five kilometres every Sunday.", "habit"),
}


async def main():
    index = {"dims": DIMS, "embed": embed, "fields": ["text"]}
    # Memories live for a week unless read again (refresh_on_read).
    ttl = {"default_ttl": 7 * 24 * 60, "refresh_on_read": True}
    async with AsyncPostgresStore.from_conn_string(URL, index=index, ttl=ttl) as store:
        await store.setup()  # the store's own migrations: tables, vector column, index
        user = ("users", "alice", "memories")
        for key, (text, kind) in MEMORIES.items():
            await store.aput(user, key, {"text": text, "kind": kind})
        # A short-lived note: gone after an hour.
        await store.aput(user, "today", {"text": "Alice is at the airport.", "kind": "status"}, ttl=60)

        hits = await store.asearch(user, query="what does alice drink in the morning", limit=2)
        for hit in hits:
            print(f"{hit.score:.3f}  {hit.value['text']}")
        assert hits[0].key == "m1", hits

        # Semantic search restricted by a filter on the memory's own fields.
        hits = await store.asearch(user, query="coffee", filter={"kind": "preference"}, limit=5)
        print("preferences about coffee:", [h.key for h in hits])
        assert [h.key for h in hits] == ["m3", "m1"], hits

        namespaces = await store.alist_namespaces(prefix=("users",))
        print("namespaces:", namespaces)
        assert namespaces == [user], namespaces

        await store.adelete(user, "m2")
        assert await store.aget(user, "m2") is None


if __name__ == "__main__":
    asyncio.run(main())
