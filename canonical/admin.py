"""The canonical app's admin. Pages live in modules named for what they show; importing them registers them."""

from __future__ import annotations

from canonical import admin_identity, admin_infrastructure, admin_records  # noqa: F401
