"""Fernet encryption at rest: key rotation and cache reset.

`fernet_fields` caches the key list on each field the first time it is used; when the keys
change (a test's `override_settings`, or rotation in one process) those caches must go.
"""

from __future__ import annotations

from django.apps import apps
from django.core.signals import setting_changed
from django.db import models, transaction
from fernet_fields import EncryptedField

_CACHED = ("keys", "fernet_keys", "fernet")


def encrypted_fields(model: type[models.Model]) -> list[EncryptedField]:
    return [f for f in model._meta.concrete_fields if isinstance(f, EncryptedField)]


def reset_key_caches() -> None:
    for model in apps.get_models():
        for field in encrypted_fields(model):
            for name in _CACHED:
                field.__dict__.pop(name, None)


def _on_setting_changed(setting: str, **kwargs) -> None:
    if setting in {"FERNET_KEYS", "FERNET_USE_HKDF", "SECRET_KEY"}:
        reset_key_caches()


def connect_signals() -> None:
    setting_changed.connect(_on_setting_changed, dispatch_uid="hub.crypto.reset_key_caches")


def rotate_all(batch_size: int = 500) -> dict[str, int]:
    """Re-encrypt every encrypted column with the first of `FERNET_KEYS`.

    Reading decrypts with any configured key; saving encrypts with the first. Returns rows
    re-encrypted per model label. Each batch commits on its own, so a crash loses nothing:
    rows not yet rewritten are still readable with the old key, which stays configured.
    """
    reset_key_caches()
    counts: dict[str, int] = {}
    for model in apps.get_models():
        fields = [f.name for f in encrypted_fields(model)]
        if not fields:
            continue
        pks = list(model._base_manager.order_by("pk").values_list("pk", flat=True))
        done = 0
        for start in range(0, len(pks), batch_size):
            with transaction.atomic():
                for obj in model._base_manager.select_for_update().filter(pk__in=pks[start : start + batch_size]):
                    # update() bypasses save(): rotation is not an edit and bumps no timestamps.
                    model._base_manager.filter(pk=obj.pk).update(**{name: getattr(obj, name) for name in fields})
                    done += 1
        counts[model._meta.label] = done
    return counts
