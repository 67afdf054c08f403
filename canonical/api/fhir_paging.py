"""Keyset paging for searchset Bundles: an opaque, signed continuation token in the next link.

Records are served in insertion order (database key), child rows in their encounter's order and
then by position; neither changes when a record is updated (child rows are rewritten with their
encounter, but keep encounter and position). A page asks for rows after the last one it served,
so a record inserted while a partner pages through lands on a later page and no row is served
twice or skipped. The token names that last row by public ids only (never a database key), is
signed so it cannot be forged, and is bound to the resource type and filters it was issued for:
reusing it with other filters is a 400, not a silently wrong page.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.core import signing

from canonical.api.fhir_outcome import invalid_parameter

CURSOR_PARAM = "_cursor"
_SALT = "canonical.api.fhir_paging"


def filters_fingerprint(resource_type: str, filters: Sequence[tuple[str, str]]) -> str:
    """A short digest of the search (type and filters, in any order); not of `_count`."""
    text = "\n".join([resource_type, *sorted(f"{name}={value}" for name, value in filters)])
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


def make_token(bookmark: dict[str, Any], fingerprint: str) -> str:
    """`bookmark` says where the page ended, in public terms (see `fhir_search.bookmark`)."""
    return signing.dumps({"b": bookmark, "f": fingerprint}, salt=_SALT, compress=False)


def read_token(token: str, fingerprint: str) -> dict[str, Any]:
    """The bookmark of the page before. Raises FhirError (400) naming `_cursor`."""
    try:
        payload = signing.loads(token, salt=_SALT)
    except signing.BadSignature:
        raise invalid_parameter(CURSOR_PARAM, f"{CURSOR_PARAM}: the continuation token is not one this server issued.") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("b"), dict):
        raise damaged()
    if payload.get("f") != fingerprint:
        raise invalid_parameter(
            CURSOR_PARAM, f"{CURSOR_PARAM}: the continuation token belongs to another search; follow the next link as given."
        )
    return payload["b"]


def damaged():
    return invalid_parameter(CURSOR_PARAM, f"{CURSOR_PARAM}: the continuation token no longer points at a record here.")
