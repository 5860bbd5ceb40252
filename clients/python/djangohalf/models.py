"""A model with a half-precision vector (pgvector's halfvec), kept apart: vectorgate has
no halfvec yet, so test_django.py expects its migration to fail until it does."""

from django.db import models
from pgvector.django import HalfVectorField


class HalfItem(models.Model):
    embedding = HalfVectorField(dimensions=3)
