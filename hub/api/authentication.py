"""Partner authentication: `Authorization: Bearer sb_live_<prefix>_<secret>`.

A valid key sets `request.user` to a PartnerPrincipal, `request.auth` to the ApiKey, and
`request.tenant` to the key's tenant; every viewset scopes its queries to that tenant.
"""

from __future__ import annotations

from datetime import timedelta

from django.utils import timezone
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header

from tenants.choices import ALL_SCOPES
from tenants.keys import MalformedKey, parse_key, secret_matches
from tenants.models import ApiKey

# last_used_at is informational; writing it at most once a minute keeps reads free of writes.
LAST_USED_RESOLUTION = timedelta(minutes=1)


class PartnerPrincipal:
    """The partner app behind a key, standing in for `request.user`."""

    is_authenticated = True
    is_anonymous = False
    is_staff = False
    is_superuser = False
    pk = None

    def __init__(self, api_key: ApiKey):
        self.api_key = api_key
        self.partner_app = api_key.partner_app
        self.tenant = api_key.partner_app.tenant
        self.scopes = frozenset(api_key.scopes)

    def get_username(self) -> str:
        return f"partner:{self.partner_app.name}"

    def has_scope(self, scope: str) -> bool:
        return ALL_SCOPES in self.scopes or scope in self.scopes

    def __str__(self) -> str:
        return self.get_username()


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "bearer"

    def authenticate(self, request):
        header = get_authorization_header(request)
        if not header:
            return None  # the permission check then answers 401 "credentials were not provided"
        try:
            parts = header.decode("ascii").split()
        except UnicodeDecodeError:
            raise exceptions.AuthenticationFailed("The Authorization header is not ASCII.", code="key_malformed") from None
        if parts[0].lower() != self.keyword or len(parts) != 2:
            raise exceptions.AuthenticationFailed(
                "Use 'Authorization: Bearer <api key>' with a key like sb_live_<prefix>_<secret>.", code="key_malformed"
            )
        try:
            parsed = parse_key(parts[1])
        except MalformedKey as exc:
            raise exceptions.AuthenticationFailed(str(exc), code="key_malformed") from None

        api_key = ApiKey.objects.select_related("partner_app__tenant").filter(prefix=parsed.prefix).first()
        if api_key is None or not secret_matches(parsed.secret, api_key.secret_hash):
            raise exceptions.AuthenticationFailed("The API key is not valid.", code="key_invalid")
        now = timezone.now()
        if api_key.revoked_at is not None:
            raise exceptions.AuthenticationFailed(
                f"This API key was revoked on {api_key.revoked_at:%Y-%m-%d %H:%M} UTC.", code="key_revoked"
            )
        if api_key.expires_at is not None and api_key.expires_at <= now:
            raise exceptions.AuthenticationFailed(
                f"This API key expired on {api_key.expires_at:%Y-%m-%d %H:%M} UTC.", code="key_expired"
            )
        if not api_key.partner_app.active:
            raise exceptions.AuthenticationFailed("The partner app of this key is disabled.", code="app_disabled")
        if not api_key.partner_app.tenant.active:
            raise exceptions.AuthenticationFailed("The tenant of this key is inactive.", code="tenant_inactive")

        if api_key.last_used_at is None or api_key.last_used_at < now - LAST_USED_RESOLUTION:
            ApiKey.objects.filter(pk=api_key.pk).update(last_used_at=now)

        principal = PartnerPrincipal(api_key)
        request.tenant = principal.tenant
        request._request.tenant = principal.tenant
        return principal, api_key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="switchboard"'
