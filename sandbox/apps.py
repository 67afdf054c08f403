from django.apps import AppConfig


class SandboxConfig(AppConfig):
    """Installed only so that `manage.py sandbox` exists; the sandbox itself does not use Django."""

    name = "sandbox"
    verbose_name = "Vendor sandbox"
