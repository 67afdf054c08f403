"""Inbound Welkin notifications: signed ids-only pings, pulled later (ping and pull).

    POST /hooks/welkin/<connection public id>/
    X-Welkin-Timestamp: <Unix seconds>
    X-Welkin-Signature: <hex HMAC-SHA256 of "<timestamp>.<body>" under the tenant's webhook secret>
    {"sourceId", "patientId", "tenantName", "instanceName", "eventEntity", "eventSubtype", "eventTime"}

The secret is the connection credential's `extra` {"webhook_secret": …} (encrypted at rest). The
view checks size, signature, then age (a ping signed more than 5 minutes away from now is a
replay), answers 202 and enqueues one `pull_resource` after commit. Duplicates pull once, in two
layers (the cache, shared by every web worker):
- a delivery already accepted (same sourceId, eventSubtype, eventTime: Welkin's retry of a ping
  whose answer it did not get) is acknowledged and dropped;
- a ping for a record whose pull is still queued is covered by that pull, which reads the record
  as it is when it runs; the pull clears the mark when it starts (`WelkinConnector.fetch_one`),
  so a change after that gets its own pull. A lost pull is bounded by the mark's lifetime, and
  the reconciliation sweep reads whatever it missed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time

from django.core.cache import cache
from django.core.exceptions import ObjectDoesNotExist
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.urls import path
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.welkin import constants as c
from connectors.welkin.connector import WelkinConnector, pending_pull_key
from tenants.models import Connection

logger = logging.getLogger(__name__)
_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"  # the id goes into a vendor URL path: one plain segment


class Ping(BaseModel):
    """What Welkin posts: which record changed, and how; no PHI."""

    model_config = ConfigDict(extra="ignore")
    sourceId: str = Field(min_length=1, max_length=64, pattern=_ID)  # noqa: N815  (Welkin's field names)
    patientId: str | None = Field(default=None, max_length=64)  # noqa: N815
    tenantName: str = Field(default="", max_length=100)  # noqa: N815
    instanceName: str = Field(default="", max_length=100)  # noqa: N815
    eventEntity: str = Field(min_length=1, max_length=64)  # noqa: N815
    eventSubtype: str = Field(min_length=1, max_length=64)  # noqa: N815
    eventTime: str = Field(default="", max_length=40)  # noqa: N815


class UnknownEntity(ValueError):
    pass


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """What Welkin sends as X-Welkin-Signature (also used by tests to sign pings)."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def webhook_secret(connection: Connection) -> str:
    """The connection's signing secret ('' when none is set: every ping is then refused)."""
    try:
        extra = connection.credential.extra_data
    except (ObjectDoesNotExist, ValueError):
        return ""
    secret = extra.get("webhook_secret") if isinstance(extra, dict) else None
    return secret if isinstance(secret, str) else ""


def accept_ping(connection: Connection, ping: Ping) -> str:
    """Enqueue the pull a ping asks for, once the current transaction commits. Returns what
    happened: "accepted", "duplicate" (this delivery was seen), "covered" (a pull of the record is
    queued), "ignored" (disabled connection, or an entity the hub does not keep). Raises
    UnknownEntity for an eventEntity Welkin does not send."""
    from connectors.tasks import pull_resource  # the actors module imports the sync engine: load it on use

    if ping.eventEntity in c.IGNORED_EVENTS:
        return "ignored"
    resource = c.EVENT_RESOURCES.get(ping.eventEntity)
    if resource is None:
        raise UnknownEntity(ping.eventEntity)
    if not connection.enabled:
        logger.info("welkin connection=%s is disabled; ping for %s ignored", connection.pk, resource)
        return "ignored"
    delivery = hashlib.sha256(f"{ping.sourceId}|{ping.eventSubtype}|{ping.eventTime}".encode()).hexdigest()[:32]
    delivery_key = f"welkin:delivery:{connection.public_id}:{delivery}"
    if not cache.add(delivery_key, 1, timeout=c.DELIVERY_SEEN_S):
        return "duplicate"
    pending_key = pending_pull_key(connection, resource, ping.sourceId)
    if not cache.add(pending_key, 1, timeout=c.PENDING_PULL_S):
        return "covered"
    connection_id, external_id = connection.pk, ping.sourceId

    def enqueue() -> None:
        try:
            pull_resource.send(connection_id=connection_id, resource=resource, external_id=external_id)
        except BaseException:
            # Not queued (the broker is down): forget the marks, so Welkin's retry of this ping is not
            # taken for a duplicate. The error still answers non-2xx, which makes Welkin retry.
            cache.delete_many([delivery_key, pending_key])
            raise

    transaction.on_commit(enqueue)
    return "accepted"


@csrf_exempt
@require_POST
def welkin_ping(request: HttpRequest, connection_id) -> JsonResponse:
    """POST /hooks/welkin/<connection public id>/ → 202 {"status": …}.

    404 for an unknown connection, or one with no webhook secret set; 413 over 16 KiB; 400 when
    the signature headers are missing or the timestamp is no number; 401 for a wrong signature;
    400 for a timestamp more than 5 minutes from now; 400 for a body that is no ping; 422 for an
    eventEntity Welkin does not send."""
    connection = Connection.objects.select_related("credential").filter(public_id=connection_id, vendor=WelkinConnector.key).first()
    secret = webhook_secret(connection) if connection is not None else ""
    if not secret:
        return JsonResponse({"detail": "Not found."}, status=404)
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if (declared.isdigit() and int(declared) > c.MAX_PING_BYTES) or len(request.body) > c.MAX_PING_BYTES:
        return JsonResponse({"detail": "The ping is larger than 16 KiB."}, status=413)
    timestamp = request.headers.get(c.TIMESTAMP_HEADER, "")
    presented = request.headers.get(c.SIGNATURE_HEADER, "")
    if not timestamp.isdigit() or not presented:
        return JsonResponse({"detail": f"{c.TIMESTAMP_HEADER} (Unix seconds) and {c.SIGNATURE_HEADER} are required."}, status=400)
    if not hmac.compare_digest(presented.encode(), signature(secret, timestamp, request.body).encode()):
        return JsonResponse({"detail": "The signature does not match."}, status=401)
    if abs(time.time() - int(timestamp)) > c.MAX_PING_AGE_S:
        return JsonResponse({"detail": "The ping's timestamp is more than 5 minutes from now."}, status=400)
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError):
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"detail": "The body must be a JSON object."}, status=400)
    try:
        ping = Ping.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return JsonResponse({"detail": f"{where}: {first['msg']}"}, status=400)
    try:
        status = accept_ping(connection, ping)
    except UnknownEntity:
        return JsonResponse({"detail": "eventEntity must be one of " + ", ".join([*c.EVENT_RESOURCES, *sorted(c.IGNORED_EVENTS)]) + "."},
                            status=422)
    return JsonResponse({"status": status}, status=202)


# Included by connectors/urls.py under /hooks/welkin/.
urlpatterns = [path("<uuid:connection_id>/", welkin_ping, name="welkin-webhook")]
