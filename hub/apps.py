from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class HubConfig(AppConfig):
    name = "hub"
    verbose_name = "Switchboard hub"
    default = True

    def ready(self) -> None:
        from hub import crypto
        from hub.api import schema  # noqa: F401  (registers the OpenAPI auth extension)

        crypto.connect_signals()


class HubAdminConfig(admin_apps.AdminConfig):
    """The admin app with our site (TOTP in production) as `admin.site`."""

    default = False
    default_site = "hub.admin_site.HubAdminSite"
