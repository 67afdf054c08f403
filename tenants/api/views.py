from __future__ import annotations

from hub.api.viewsets import ReadOnlyTenantViewSet, TenantModelViewSet
from tenants.api.serializers import CodeMappingSerializer, ConnectionSerializer
from tenants.models import CodeMapping, Connection


class ConnectionViewSet(ReadOnlyTenantViewSet):
    """The tenant's vendor connections and their health."""

    queryset = Connection.objects.select_related("credential")
    serializer_class = ConnectionSerializer
    scope_resource = "connections"


class CodeMappingViewSet(TenantModelViewSet):
    """The tenant's code mappings (vendor code → hub code) per category."""

    queryset = CodeMapping.objects.all()
    serializer_class = CodeMappingSerializer
    scope_resource = "code_mappings"
