"""Partner endpoints for vendor sessions: open one (a job) and read its state — never its token."""

from __future__ import annotations

from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

from connectors.models import VendorSession
from tenants.audit import client_ip, record_audit
from tenants.choices import AuditAction
from tenants.models import Connection


class SessionStateSerializer(serializers.Serializer):
    connection = serializers.UUIDField()
    state = serializers.CharField()
    method = serializers.CharField(allow_blank=True)
    obtained_at = serializers.DateTimeField(allow_null=True)
    expires_at = serializers.DateTimeField(allow_null=True)
    rotated_at = serializers.DateTimeField(allow_null=True)
    detail = serializers.CharField(allow_blank=True)
    status_url = serializers.URLField()


def _state(request, connection: Connection) -> dict:
    session = VendorSession.objects.filter(connection=connection).first()
    return {
        "connection": connection.public_id,
        "state": session.state if session else "none",
        "method": session.method if session else "",
        "obtained_at": session.obtained_at if session else None,
        "expires_at": session.expires_at if session else None,
        "rotated_at": session.rotated_at if session else None,
        "detail": session.detail if session else "",
        "status_url": reverse("api:connection-session", kwargs={"id": connection.public_id}, request=request),
    }


class _ConnectionScoped(APIView):
    scope_resource = "connections"

    def connection(self, request, id) -> Connection:
        return get_object_or_404(Connection, tenant=request.tenant, public_id=id)

    def audit(self, request, connection: Connection, action: str) -> None:
        record_audit(action, object_type="connectors.vendorsession", object_id=connection.public_id, tenant=request.tenant,
                     partner_app=request.user.partner_app, ip=client_ip(request))


class SessionOpenView(_ConnectionScoped):
    """Open (or renew) the vendor session of a connection. Answers 202; follow `status_url`."""

    @extend_schema(request=None, responses={202: SessionStateSerializer})
    def post(self, request, id):
        from connectors.tasks import open_session

        connection = self.connection(request, id)
        with transaction.atomic():
            self.audit(request, connection, AuditAction.CREATE)
            transaction.on_commit(lambda: open_session.send(connection_id=connection.pk))
        body = SessionStateSerializer(_state(request, connection)).data
        return Response(body, status=status.HTTP_202_ACCEPTED, headers={"Location": body["status_url"]})


class SessionStateView(_ConnectionScoped):
    """The state of the connection's vendor session."""

    @extend_schema(responses=SessionStateSerializer)
    def get(self, request, id):
        connection = self.connection(request, id)
        self.audit(request, connection, AuditAction.READ)
        return Response(SessionStateSerializer(_state(request, connection)).data)
