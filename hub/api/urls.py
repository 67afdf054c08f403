from django.urls import include, path

from hub.api.views import ApiRootView, MeView

app_name = "api"

urlpatterns = [
    path("", ApiRootView.as_view(), name="root"),
    path("me", MeView.as_view(), name="me"),
    path("", include("tenants.api.urls")),
    path("", include("connectors.api.urls")),
]
