from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django_otp.plugins.otp_totp.models import TOTPDevice

from tenants.audit import record_audit


class Command(BaseCommand):
    help = "Give a staff user a TOTP device for the admin's second factor; prints the otpauth:// URL once."

    def add_arguments(self, parser):
        parser.add_argument("username")
        parser.add_argument("--name", default="authenticator")

    def handle(self, username, name, **options):
        try:
            user = get_user_model().objects.get(username=username)
        except get_user_model().DoesNotExist:
            raise CommandError(f"No user '{username}'.") from None
        device = TOTPDevice.objects.create(user=user, name=name, confirmed=True)
        record_audit("create", object_type="otp_totp.totpdevice", object_id=device.pk, actor_label="system:manage.py",
                     detail={"user": user.get_username()})
        self.stderr.write("Add this to the authenticator app (shown once):")
        self.stdout.write(device.config_url)
