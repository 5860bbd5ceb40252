"""Retrieval for RAG with langchain-postgres' PGVector over vectorgate: documents with
metadata in, the nearest chunks (filtered by metadata) out, ready for a prompt.

    pip install "langchain-postgres==0.0.19" "psycopg[binary]"
    cargo run --release -- serve
    DATABASE_URL=postgresql://localhost:5433/vectorgate python examples/python/rag_langchain.py
"""

import hashlib
import math
import os

from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_postgres import PGVector

URL = os.environ.get("DATABASE_URL", "postgresql://localhost:5433/vectorgate")
# langchain-postgres speaks psycopg 3: its URLs say so.
CONNECTION = URL.replace("postgresql://", "postgresql+psycopg://", 1)
DIMS = 64


class HashedWords(Embeddings):
    """A stand-in embedding (hashed bag of words) so the example runs without a model;
    use OpenAIEmbeddings, HuggingFaceEmbeddings, ... in its place."""

    def embed_documents(self, texts):
        return [self.embed_query(t) for t in texts]

    def embed_query(self, text):
        v = [0.0] * DIMS
        for word in text.lower().replace(".", " ").replace("?", " ").split():
            v[int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        norm = math.sqrt(sum(x * x for x in v)) or 1.0
        return [x / norm for x in v]


DOCS = [
    Document("vectorgate speaks the Postgres wire protocol.", metadata={"source": "readme", "year": 2026}),
    Document("Rows live in ScyllaDB and vectors in Qdrant.", metadata={"source": "readme", "year": 2026}),
    Document("Qdrant filters are pushed down from the WHERE clause.", metadata={"source": "design", "year": 2025}),
    Document("Postgres with pgvector stores vectors in a table column.", metadata={"source": "blog", "year": 2024}),
]

store = PGVector(
    embeddings=HashedWords(),
    embedding_length=DIMS,  # a vector(64) column, which vectorgate indexes
    collection_name="rag_example",
    connection=CONNECTION,
    use_jsonb=True,
    pre_delete_collection=True,  # start afresh on every run
)
store.add_documents(DOCS, ids=[f"doc{i}" for i in range(len(DOCS))])

question = "where do vectors live?"
chunks = store.similarity_search(question, k=2, filter={"source": {"$eq": "readme"}})
context = "\n".join(f"- {c.page_content}" for c in chunks)
print(f"Answer the question from the context.\n\nContext:\n{context}\n\nQuestion: {question}")
assert chunks[0].page_content == DOCS[1].page_content, chunks

recent = store.similarity_search_with_score(question, k=3, filter={"year": {"$gte": 2025}})
print("recent:", [(d.metadata["source"], round(s, 3)) for d, s in recent])
assert all(d.metadata["year"] >= 2025 for d, _ in recent) and len(recent) == 3, recent
