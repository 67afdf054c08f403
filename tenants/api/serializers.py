from __future__ import annotations

from rest_framework import serializers

from tenants.models import CodeMapping, Connection


class ConnectionSerializer(serializers.ModelSerializer):
    """A connection as partners see it: never its credential, only whether one is configured."""

    id = serializers.UUIDField(source="public_id", read_only=True)
    credential_configured = serializers.SerializerMethodField()

    class Meta:
        model = Connection
        fields = [
            "id", "vendor", "display_name", "base_url", "enabled", "sync_schedule",
            "status", "status_detail", "last_synced_at", "credential_configured", "created_at", "updated_at",
        ]
        read_only_fields = fields

    def get_credential_configured(self, obj: Connection) -> bool:
        return hasattr(obj, "credential")


class CodeMappingSerializer(serializers.ModelSerializer):
    id = serializers.UUIDField(source="public_id", read_only=True)

    class Meta:
        model = CodeMapping
        fields = [
            "id", "category", "source_system", "source_code", "target_system", "target_code",
            "display", "active", "created_at", "updated_at",
        ]
        read_only_fields = ["id", "created_at", "updated_at"]

    def validate(self, attrs):
        tenant = self.context["request"].tenant
        key = {
            name: attrs.get(name, getattr(self.instance, name, None))
            for name in ("category", "source_system", "source_code")
        }
        clash = CodeMapping.objects.filter(tenant=tenant, **key)
        if self.instance is not None:
            clash = clash.exclude(pk=self.instance.pk)
        if clash.exists():
            raise serializers.ValidationError(
                {"source_code": f"A {key['category']} mapping for {key['source_system']}/{key['source_code']} already exists."}
            )
        return attrs
