"""Inbound WellSky Personal Care Connect webhooks: thin `{resourceType, id}` pings, pulled later.

PCC signs nothing, so each connection's subscriptions carry a secret in their URL
(`?token=`, see `connectors.wellsky.pcc.webhook_token`). The view answers fast and enqueues a
`pull_resource` after commit; the pull fetches the record and applies it (idempotent, so a
duplicate ping costs one more fetch, nothing else).
"""

from __future__ import annotations

import hmac
import json
import logging

from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from connectors.wellsky.pcc import PING_RESOURCES, WellSkyPersonalCareConnector, webhook_token
from tenants.models import Connection

logger = logging.getLogger(__name__)

MAX_BODY = 16 * 1024  # bytes; a ping is about 50


class Ping(BaseModel):
    """What PCC posts. The id goes into a vendor URL path, so it must be one plain segment."""

    model_config = ConfigDict(extra="ignore", populate_by_name=True)
    resource_type: str = Field(alias="resourceType", min_length=1, max_length=64)
    id: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnknownResourceType(ValueError):
    pass


def accept_ping(connection: Connection, ping: Ping) -> str | None:
    """Enqueue the pull a ping asks for, once the current transaction commits. Returns the
    connector's resource name, or None when the connection is disabled (nothing is pulled).
    Raises UnknownResourceType for a resourceType this connector does not read."""
    from connectors.tasks import pull_resource  # the actors module imports the sync engine: load it on use

    resource = PING_RESOURCES.get(ping.resource_type)
    if resource is None:
        raise UnknownResourceType(ping.resource_type)
    if not connection.enabled:
        logger.info("wellsky_pcc connection=%s is disabled; ping for %s ignored", connection.pk, resource)
        return None
    connection_id, external_id = connection.pk, ping.id
    transaction.on_commit(lambda: pull_resource.send(connection_id=connection_id, resource=resource, external_id=external_id))
    return resource


@csrf_exempt
@require_POST
def pcc_ping(request: HttpRequest, connection_id) -> JsonResponse:
    """POST /hooks/wellsky-pcc/<connection public id>/?token=… with {"resourceType", "id"} → 202.

    Unknown connection and wrong token both answer 404, so neither confirms the other; 413 over
    16 KiB; 400 for a body that is no ping (the message names the problem); 422 for a resourceType
    the connector does not read."""
    connection = Connection.objects.filter(public_id=connection_id, vendor=WellSkyPersonalCareConnector.key).first()
    presented = request.GET.get("token", "")
    if connection is None or not hmac.compare_digest(presented.encode(), webhook_token(connection).encode()):
        return JsonResponse({"detail": "Not found."}, status=404)
    declared = request.META.get("CONTENT_LENGTH") or "0"
    if (declared.isdigit() and int(declared) > MAX_BODY) or len(request.body) > MAX_BODY:
        return JsonResponse({"detail": "The ping is larger than 16 KiB."}, status=413)
    try:
        body = json.loads(request.body)
    except (ValueError, RecursionError):  # RecursionError: nesting deep enough to exhaust the parser
        return JsonResponse({"detail": "The body is not JSON."}, status=400)
    if not isinstance(body, dict):
        return JsonResponse({"detail": "The body must be a JSON object with resourceType and id."}, status=400)
    try:
        ping = Ping.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        return JsonResponse({"detail": f"{where}: {first['msg']}"}, status=400)
    try:
        resource = accept_ping(connection, ping)
    except UnknownResourceType:
        known = ", ".join(PING_RESOURCES)
        return JsonResponse({"detail": f"resourceType must be one of {known}."}, status=422)
    return JsonResponse({"status": "accepted" if resource else "ignored"}, status=202)
