"""Public ids of canonical records: time-ordered, so new rows land at the end of their indexes.

A random UUID (v4) puts every new record on a random page of the public-id index, and of every
index keyed by it (child rows, change events); a batch of 1,000 creates dirties ~1,000 index
pages that each commit writes out again. On SQLite that commit cost was most of an upsert. A
UUIDv7 (RFC 9562) starts with the creation time in milliseconds, so a batch dirties a few pages
at the right edge. The id says when the hub first stored the record (never a clinical time);
the API shows that time anyway (`created_at`, FHIR `meta.lastUpdated`).

Python 3.14 has `uuid.uuid7`; until the project moves there, this is the RFC's layout by hand.
"""

from __future__ import annotations

import hashlib
import os
import time
import uuid

_VERSION_7 = 0x7 << 76
_VARIANT = 0b10 << 62
_RAND_A = 0xFFF << 64
_RAND_B = (1 << 62) - 1


def uuid7() -> uuid.UUID:
    """48 bits of Unix time in ms, version 7, 74 random bits (RFC 9562 §5.7)."""
    return uuid7s(1)[0]


def uuid7s(count: int) -> list[uuid.UUID]:
    """`count` UUIDv7s from one read of the system's random source (a syscall per id adds up
    over a page of a thousand records)."""
    stamp = (time.time_ns() // 1_000_000) << 80 | _VERSION_7 | _VARIANT
    pool = os.urandom(10 * count)
    values = (int.from_bytes(pool[i : i + 10], "big") for i in range(0, 10 * count, 10))
    return [uuid.UUID(int=stamp | (rand & _RAND_A) | (rand & _RAND_B)) for rand in values]


_V8_CLEAR = ~((0xF << 76) | (0b11 << 62))
_V8_SET = (0x8 << 76) | _VARIANT
_LOW_80 = (1 << 80) - 1


def child_ids(parent: uuid.UUID, names: list[str]) -> list[str]:
    """Public ids for the child rows (an identifier of a patient, a diagnosis of an encounter) of
    one parent, one per name ("identifiers/0", …), as 32 hex digits: the parent's leading 48 bits
    (its creation time, for a UUIDv7 parent) then 80 bits of SHA-1 over the parent id and the
    name, marked as a UUIDv8 (RFC 9562 §5.8).

    Derived, not stored anywhere else: the same parent and position give the same id on every
    update, and children sort next to their parent in the index. 32 hex digits are the parameter
    both databases take for a UUID column."""
    raw = parent.bytes
    head = (int.from_bytes(raw[:6], "big") << 80) | _V8_SET
    return [
        f"{head | (int.from_bytes(hashlib.sha1(raw + name.encode()).digest()[:10], 'big') & _LOW_80 & _V8_CLEAR):032x}"  # noqa: S324 (a name-based id, not a secret)
        for name in names
    ]
