from django.urls import path

from connectors.views import mfa_relay

urlpatterns = [
    path("mfa/<uuid:connection_id>/", mfa_relay, name="mfa-relay"),
]
