"""The models of the Django client test's arrays (test_django.py): `ArrayField`s of the
base fields Django's documentation shows them with, as an application declares them."""

from django.contrib.postgres.fields import ArrayField
from django.db import models


class Tagged(models.Model):
    name = models.CharField(max_length=40, unique=True)
    tags = ArrayField(models.CharField(max_length=20), blank=True, default=list)
    scores = ArrayField(models.FloatField(), default=list)
    counts = ArrayField(models.IntegerField(), null=True, blank=True)
    ids = ArrayField(models.UUIDField(), default=list)
    seen = ArrayField(models.DateTimeField(), default=list)
    prices = ArrayField(models.DecimalField(max_digits=8, decimal_places=2), default=list)
    flags = ArrayField(models.BooleanField(), default=list)
