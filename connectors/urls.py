from django.urls import include, path

from connectors.views import mfa_relay
from connectors.wellsky import webhooks as pcc_webhooks

urlpatterns = [
    path("mfa/<uuid:connection_id>/", mfa_relay, name="mfa-relay"),
    path("wellsky-pcc/<uuid:connection_id>/", pcc_webhooks.pcc_ping, name="wellsky-pcc-webhook"),
    path("welkin/", include("connectors.welkin.webhooks")),  # <uuid:connection_id>/ → the signed ping
]
