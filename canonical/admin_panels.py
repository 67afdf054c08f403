"""Read-only panels on a canonical record's admin page: its versions and the payloads it came from.

Both are rendered with autoescaping templates: a payload is vendor text and may hold markup.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from urllib.parse import urlencode

from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.safestring import SafeString

from canonical.models import ChangeEvent, SourceRecord

HISTORY_LIMIT = 100  # latest change events shown on a record's page
PAYLOAD_LIMIT = 10  # latest source payloads shown on a record's page
BODY_DISPLAY_CHARS = 20_000  # a body is cut here on the page (the full text stays in the database)
BODY_PARSE_CHARS = 1_000_000  # above this, a JSON body is shown as it came, not re-indented


@dataclass(frozen=True)
class Body:
    text: str
    truncated: bool
    total_chars: int
    shown_chars: int


def pretty_body(body: str, content_type: str = "") -> Body:
    """The body as staff should read it: JSON re-indented, HL7 v2 segments on their own lines, and
    cut at BODY_DISPLAY_CHARS with the sizes so the page can say so."""
    text = body
    looks_json = "json" in content_type or body.lstrip()[:1] in ("{", "[")
    if looks_json and len(body) <= BODY_PARSE_CHARS:
        try:
            text = json.dumps(json.loads(body), indent=2, ensure_ascii=False)
        except ValueError:
            text = body  # not valid JSON after all (a failed payload may be exactly that): show it raw
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    truncated = len(text) > BODY_DISPLAY_CHARS
    shown = text[:BODY_DISPLAY_CHARS] if truncated else text
    return Body(shown, truncated, len(text), len(shown))


def render_version_history(obj) -> SafeString:
    """The record's change events, newest first: cursor, action, version, time."""
    events = list(
        ChangeEvent.objects.filter(tenant_id=obj.tenant_id, record_id=obj.public_id)
        .order_by("-cursor")
        .values("pk", "cursor", "action", "version", "occurred_at")[: HISTORY_LIMIT + 1]
    )
    more = len(events) > HISTORY_LIMIT
    changelist = reverse("admin:canonical_changeevent_changelist") + "?" + urlencode({"q": str(obj.public_id)})
    return render_to_string(
        "admin/canonical/includes/version_history.html",
        {"events": events[:HISTORY_LIMIT], "more": more, "limit": HISTORY_LIMIT, "changelist": changelist},
    )


def render_source_payloads(obj) -> SafeString:
    """Payloads kept for this record's external id from its source connection, newest first."""
    records = list(
        SourceRecord.objects.filter(tenant_id=obj.tenant_id, connection_id=obj.source_connection_id, external_id=obj.external_id)
        .order_by("-received_at", "-pk")
        .only("pk", "resource_type", "received_at", "status", "error", "error_path", "content_type", "body")[: PAYLOAD_LIMIT + 1]
    )
    more = len(records) > PAYLOAD_LIMIT
    payloads = [
        {"record": record, "body": pretty_body(record.body, record.content_type),
         "url": reverse("admin:canonical_sourcerecord_change", args=[record.pk])}
        for record in records[:PAYLOAD_LIMIT]
    ]
    changelist = reverse("admin:canonical_sourcerecord_changelist") + "?" + urlencode(
        {"tenant__id__exact": obj.tenant_id, "connection__id__exact": obj.source_connection_id, "q": obj.external_id}
    )
    return render_to_string(
        "admin/canonical/includes/source_payloads.html",
        {"payloads": payloads, "more": more, "limit": PAYLOAD_LIMIT, "changelist": changelist},
    )


def render_body(record: SourceRecord) -> SafeString:
    """One SourceRecord's body on its own page."""
    return render_to_string("admin/canonical/includes/payload_body.html", {"body": pretty_body(record.body, record.content_type)})
