from django.urls import path

from connectors.api.views import SessionOpenView, SessionStateView

urlpatterns = [
    path("connections/<uuid:id>/sessions", SessionOpenView.as_view(), name="connection-sessions"),
    path("connections/<uuid:id>/session", SessionStateView.as_view(), name="connection-session"),
]
