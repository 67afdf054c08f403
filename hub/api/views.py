from __future__ import annotations

from collections import OrderedDict

from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.reverse import reverse
from rest_framework.views import APIView

# Named routes listed at the API root; each app's urls add theirs here as they land.
ROOT_ROUTES = OrderedDict(
    [
        ("me", "api:me"),
        ("connections", "api:connection-list"),
        ("code-mappings", "api:code-mapping-list"),
        ("schema", "api-schema"),
        ("docs", "api-docs"),
    ]
)


class ApiRootView(APIView):
    """Links to every collection. Needs no key: it lists routes, not data."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    @extend_schema(responses=inline_serializer("ApiRoot", {name: serializers.URLField() for name in ROOT_ROUTES}))
    def get(self, request):
        return Response({name: reverse(route, request=request) for name, route in ROOT_ROUTES.items()})


class MeSerializer(serializers.Serializer):
    tenant = serializers.CharField()
    partner_app = serializers.CharField()
    key_prefix = serializers.CharField()
    scopes = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)


class MeView(APIView):
    """What the calling key is: its tenant, partner app, scopes and expiry (never the key)."""

    @extend_schema(responses=MeSerializer)
    def get(self, request):
        api_key = request.auth
        return Response(
            MeSerializer(
                {
                    "tenant": request.tenant.slug,
                    "partner_app": api_key.partner_app.name,
                    "key_prefix": api_key.prefix,
                    "scopes": sorted(api_key.scopes),
                    "expires_at": api_key.expires_at,
                }
            ).data
        )
