from __future__ import annotations

from rest_framework import exceptions
from rest_framework.permissions import SAFE_METHODS, BasePermission

from hub.api.authentication import PartnerPrincipal


class MissingScope(exceptions.PermissionDenied):
    default_code = "missing_scope"

    def __init__(self, scope: str):
        self.scope = scope
        super().__init__(f"This API key lacks the scope '{scope}'.", code="missing_scope")


def required_scope(request, view) -> str | None:
    """`<resource>:read` for safe methods, `<resource>:write` otherwise; None when the view needs none.

    A view names its resource in `scope_resource`; an action may override with `action_scopes`.
    """
    action_scopes = getattr(view, "action_scopes", {}) or {}
    action = getattr(view, "action", None)
    if action in action_scopes:
        return action_scopes[action]
    resource = getattr(view, "scope_resource", None)
    if resource is None:
        return None
    return f"{resource}:{'read' if request.method in SAFE_METHODS else 'write'}"


class HasScope(BasePermission):
    """Only partner keys pass, and only with the scope the view and method need (403 names it)."""

    def has_permission(self, request, view) -> bool:
        if not isinstance(request.user, PartnerPrincipal):
            return False
        scope = required_scope(request, view)
        if scope is not None and not request.user.has_scope(scope):
            raise MissingScope(scope)
        return True
