"""Scrubbing error text before it reaches triage, logs or partners: no PHI, no secrets.

Our own exceptions are written without PHI; this is the net under everything else (database
errors quoting values, library messages echoing payloads).
"""

from __future__ import annotations

import hashlib
import re

_PATTERNS = [
    (re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]{6,}"), r"\1 ***"),  # Authorization header values
    (re.compile(r"(?i)(bearer|basic|token|password|secret|assertion|code)([\"']?\s*[:=]\s*[\"']?)[^\s,;\"'&]+"), r"\1\2***"),
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.]+"), "<email>"),
    (re.compile(r"\(([^()]{0,200})\)=\(([^()]{0,500})\)"), r"(\1)=(…)"),  # PostgreSQL: Key (col)=(value)
    (re.compile(r"'[^']{1,500}'"), "'…'"),
    (re.compile(r'"[^"]{1,500}"'), '"…"'),
    (re.compile(r"\b\d+(?:[-/.]\d+)+\b"), "#"),  # dates, SSNs, phone numbers: not even their month and day
    (re.compile(r"\b\d{3,}\b"), "#"),
]


def scrub(text: str, limit: int = 2000) -> str:
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text[:limit]


def signature(actor: str, exception_type: str, message: str) -> str:
    """Failures with the same actor, type and (scrubbed, digit-free) message group together."""
    shape = re.sub(r"\d+", "#", scrub(message, 300))
    return hashlib.sha256(f"{actor}|{exception_type}|{shape}".encode()).hexdigest()[:16]
