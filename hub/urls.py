from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from hub.views import healthz

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/v1/", include("hub.api.urls")),
    path("fhir/r4/", include("canonical.api.fhir_urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("hooks/", include("connectors.urls")),
    path("healthz", healthz, name="healthz"),
]
