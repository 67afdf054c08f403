"""Inbound hooks for connectors: the MFA code relay."""

from __future__ import annotations

import hmac
import json

from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from connectors.auth_flows import extract_code, relay_token
from connectors.models import MfaCode
from tenants.models import Connection

MAX_BODY = 16 * 1024


@csrf_exempt
@require_POST
def mfa_relay(request: HttpRequest, connection_id) -> JsonResponse:
    """An SMS gateway or mailbox forwarder posts the vendor's message here; a waiting login picks up
    the code. Authenticated by the connection's relay token (header X-Relay-Token or ?token=).
    Unknown connection and wrong token both answer 404, so neither confirms the other."""
    not_found = JsonResponse({"detail": "Not found."}, status=404)
    connection = Connection.objects.filter(public_id=connection_id).first()
    presented = request.headers.get("X-Relay-Token") or request.GET.get("token", "")
    if connection is None or not hmac.compare_digest(presented, relay_token(connection)):
        return not_found
    if len(request.body) > MAX_BODY:
        return JsonResponse({"detail": "The message is larger than 16 KiB."}, status=413)
    text = ""
    if request.content_type == "application/json":
        try:
            body = json.loads(request.body or b"{}")
        except (ValueError, RecursionError):  # RecursionError: nesting deep enough to exhaust the parser
            return JsonResponse({"detail": "The body is not JSON."}, status=400)
        if isinstance(body, dict):
            text = str(body.get("code") or body.get("text") or body.get("body") or "")
    else:  # form posts: Twilio sends Body=, mail forwarders send text=
        text = request.POST.get("Body") or request.POST.get("text") or request.POST.get("code") or ""
    code = extract_code(text)
    if code is None:
        return JsonResponse({"detail": "No 4–8 digit code found in the message."}, status=422)
    channel = request.GET.get("channel") or (body.get("channel") if request.content_type == "application/json" and isinstance(body, dict) else "") or "sms"
    if channel not in {"sms", "email"}:
        return JsonResponse({"detail": "channel must be sms or email."}, status=400)
    MfaCode.objects.create(connection=connection, channel=channel, code=code)
    return JsonResponse({"status": "accepted"}, status=202)
