"""Use cases for tenants and access. Admin, API and commands call these; each writes its audit row."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from django.db import transaction
from django.utils import timezone

from tenants import keys
from tenants.audit import object_type_of, record_audit
from tenants.choices import ALL_SCOPES, SCOPES, AuditAction
from tenants.models import ApiKey, Credential, PartnerApp, Tenant


class InvalidScopes(ValueError):
    pass


def normalize_scopes(scopes: Iterable[str]) -> list[str]:
    """Validate and order scopes; `*` stands alone. Raises InvalidScopes naming the unknown ones."""
    requested = [s.strip() for s in scopes if s and s.strip()]
    if not requested:
        raise InvalidScopes("At least one scope is needed, e.g. patients:read (or * for all).")
    unknown = sorted(set(requested) - set(SCOPES) - {ALL_SCOPES})
    if unknown:
        raise InvalidScopes(f"Unknown scopes: {', '.join(unknown)}. Known: *, {', '.join(SCOPES)}.")
    if ALL_SCOPES in requested:
        return [ALL_SCOPES]
    return sorted(set(requested), key=SCOPES.index)


def create_tenant(*, slug: str, name: str, timezone_name: str = "America/New_York", user=None) -> Tenant:
    with transaction.atomic():
        tenant = Tenant(slug=slug, name=name, timezone=timezone_name)
        tenant.full_clean()
        tenant.save()
        record_audit(AuditAction.CREATE, object_type=object_type_of(tenant), object_id=tenant.slug, tenant=tenant, user=user)
    return tenant


@dataclass(frozen=True)
class IssuedKey:
    api_key: ApiKey
    plaintext: str  # shown to the partner once; never stored


def issue_api_key(
    *,
    partner_app: PartnerApp,
    scopes: Iterable[str],
    name: str = "",
    expires_at: datetime | None = None,
    user=None,
) -> IssuedKey:
    scope_list = normalize_scopes(scopes)
    if expires_at is not None and expires_at <= timezone.now():
        raise ValueError("The expiry must be in the future.")
    plaintext, prefix, secret_hash = keys.new_key()
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            partner_app=partner_app,
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            scopes=scope_list,
            expires_at=expires_at,
            created_by=user if getattr(user, "pk", None) else None,
        )
        record_audit(
            AuditAction.KEY_ISSUED,
            object_type=object_type_of(api_key),
            object_id=api_key.prefix,
            tenant=partner_app.tenant,
            user=user,
            detail={"partner_app": str(partner_app.public_id), "scopes": scope_list},
        )
    return IssuedKey(api_key=api_key, plaintext=plaintext)


def revoke_api_keys(queryset, *, user=None) -> int:
    """Revoke every not-yet-revoked key in the queryset; returns how many were revoked."""
    now = timezone.now()
    revoked = 0
    with transaction.atomic():
        for api_key in queryset.select_related("partner_app__tenant").select_for_update(of=("self",)).filter(revoked_at__isnull=True):
            ApiKey.objects.filter(pk=api_key.pk).update(revoked_at=now)
            record_audit(
                AuditAction.KEY_REVOKED,
                object_type=object_type_of(api_key),
                object_id=api_key.prefix,
                tenant=api_key.partner_app.tenant,
                user=user,
            )
            revoked += 1
    return revoked


def set_credential_secrets(credential: Credential, secrets: dict[str, str], *, user=None) -> list[str]:
    """Write the given secrets (name → value; "" clears). Returns the names changed; audits names only."""
    changed = [name for name, value in secrets.items() if name in Credential.SECRET_FIELDS and getattr(credential, name) != value]
    with transaction.atomic():
        for name in changed:
            setattr(credential, name, secrets[name])
        credential.save()
        if changed:
            record_audit(
                AuditAction.SECRET_SET,
                object_type=object_type_of(credential),
                object_id=credential.connection.public_id,
                tenant=credential.connection.tenant,
                user=user,
                detail={"fields": sorted(changed)},
            )
    return changed
