"""Routes of the FHIR R4 facade, mounted at /fhir/r4/ (no trailing slashes, as FHIR clients send them)."""

from __future__ import annotations

from django.urls import path, re_path

from canonical.api.fhir_views import CapabilityStatementView, ReadView, SearchView, unsupported_path

app_name = "fhir"

_READ_ONLY = ["get", "head", "options"]

urlpatterns = [
    path("metadata", CapabilityStatementView.as_view(), name="metadata"),
    path("<str:resource_type>", SearchView.as_view(http_method_names=_READ_ONLY), name="search"),
    path("<str:resource_type>/_search", SearchView.as_view(http_method_names=[*_READ_ONLY, "post"]), name="search-post"),
    path("<str:resource_type>/<str:resource_id>", ReadView.as_view(), name="read"),
    re_path(r"^(?P<path>.*)$", unsupported_path, name="unsupported"),
]
