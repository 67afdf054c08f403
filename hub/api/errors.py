"""Every API error as one JSON shape (problem details, RFC 9457 style).

`{"type": "/problems/<code>", "title", "status", "detail", "code", "errors": [{"field", "message"}]}`
"""

from __future__ import annotations

from http import HTTPStatus

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from django.http import Http404
from rest_framework import exceptions
from rest_framework.response import Response
from rest_framework.views import set_rollback

from hub.api.permissions import MissingScope


def _flatten(detail, prefix: str = "") -> list[dict[str, str]]:
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            field = f"{prefix}.{key}" if prefix else str(key)
            out.extend(_flatten(value, "" if key == "non_field_errors" else field))
        return out
    if isinstance(detail, list):
        out = []
        for index, item in enumerate(detail):
            if isinstance(item, (dict, list)):
                out.extend(_flatten(item, f"{prefix}[{index}]" if prefix else str(index)))
            else:
                out.extend(_flatten(item, prefix))
        return out
    return [{"field": prefix, "message": str(detail)}]


def problem(status: int, code: str, detail: str, errors: list[dict] | None = None, **extra) -> dict:
    body = {
        "type": f"/problems/{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if errors:
        body["errors"] = errors
    body.update(extra)
    return body


def problem_exception_handler(exc, context):
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    elif isinstance(exc, DjangoPermissionDenied):
        exc = exceptions.PermissionDenied()
    if not isinstance(exc, exceptions.APIException):
        return None  # a real bug: let Django log it and answer 500

    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))

    extra = {}
    if isinstance(exc.detail, (dict, list)):
        errors = _flatten(exc.detail)
        code = "invalid"
        detail = "Invalid input: " + "; ".join(f"{e['field']}: {e['message']}" if e["field"] else e["message"] for e in errors)
    else:
        errors = []
        code = getattr(exc.detail, "code", None) or exc.default_code
        detail = str(exc.detail)
    if isinstance(exc, MissingScope):
        extra["missing_scope"] = exc.scope
    set_rollback()
    return Response(
        problem(exc.status_code, code, detail, errors, **extra),
        status=exc.status_code,
        headers=headers,
        content_type="application/problem+json",
    )
