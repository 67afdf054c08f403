"""Teaches drf-spectacular our bearer key scheme, so /api/schema/ documents it."""

from drf_spectacular.extensions import OpenApiAuthenticationExtension


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "hub.api.authentication.ApiKeyAuthentication"
    name = "partnerKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "bearerFormat": "sb_live_<prefix>_<secret>",
            "description": "A partner API key issued by the tenant's administrator.",
        }
