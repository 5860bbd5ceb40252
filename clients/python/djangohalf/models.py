"""A model with a half-precision vector (pgvector's halfvec)."""

from django.db import models
from pgvector.django import HalfVectorField


class HalfItem(models.Model):
    embedding = HalfVectorField(dimensions=3)
