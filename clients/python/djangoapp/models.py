"""The models of the Django client test (test_django.py): a pgvector field with an HNSW
index, a unique title, a JSONField and a foreign key, as pgvector-python's README shows
them."""

from django.db import models
from pgvector.django import HnswIndex, VectorField


class Document(models.Model):
    title = models.CharField(max_length=100, unique=True)
    category = models.CharField(max_length=20, default="misc")
    meta = models.JSONField(default=dict)
    created = models.DateTimeField(auto_now_add=True)
    embedding = VectorField(dimensions=3)

    class Meta:
        indexes = [
            HnswIndex(
                name="doc_embedding_idx",
                fields=["embedding"],
                m=16,
                ef_construction=64,
                opclasses=["vector_l2_ops"],
            )
        ]


class Chunk(models.Model):
    document = models.ForeignKey(Document, on_delete=models.CASCADE, related_name="chunks")
    n = models.IntegerField()
