"""Partner API keys: `sb_live_<prefix>_<secret>`. Only the SHA-256 of the secret is stored.

The secret carries 256 bits of randomness, so a fast hash is the right one (a slow password hash
would only slow every request); comparison is constant-time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass

KEY_PREFIX = "sb_live_"
_KEY_RE = re.compile(r"^sb_live_([a-z0-9]{10})_([A-Za-z0-9_-]{43})$")


@dataclass(frozen=True)
class ParsedKey:
    prefix: str
    secret: str


class MalformedKey(ValueError):
    pass


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_key() -> tuple[str, str, str]:
    """Return (full key, prefix, secret hash)."""
    prefix = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(10))
    secret = secrets.token_urlsafe(32)  # 43 characters
    return f"{KEY_PREFIX}{prefix}_{secret}", prefix, hash_secret(secret)


def parse_key(raw: str) -> ParsedKey:
    match = _KEY_RE.match(raw)
    if not match:
        raise MalformedKey("The API key is malformed: expected sb_live_<prefix>_<secret>.")
    return ParsedKey(prefix=match.group(1), secret=match.group(2))


def secret_matches(secret: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_secret(secret), stored_hash)
