from django.apps import AppConfig


class Hl7v2Config(AppConfig):
    name = "connectors.hl7v2"
    label = "hl7v2"
    verbose_name = "HL7 v2 feeds"
    default_auto_field = "django.db.models.BigAutoField"
