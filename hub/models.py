"""Abstract bases shared by every app."""

from __future__ import annotations

import uuid

from django.db import models


class PublicIdModel(models.Model):
    """A stable UUID for the outside world; database keys are never exposed."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False, verbose_name="public id")

    class Meta:
        abstract = True


class TimestampedModel(models.Model):
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True
