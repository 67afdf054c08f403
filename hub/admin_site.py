"""The staff admin. In production it demands a TOTP code at login (django-otp)."""

from __future__ import annotations

from django.conf import settings
from django.contrib import admin
from django.contrib.admin.forms import AdminAuthenticationForm
from django_otp.admin import OTPAdminAuthenticationForm


class HubAdminSite(admin.AdminSite):
    site_header = "Switchboard"
    site_title = "Switchboard admin"
    index_title = "Tenants, connections, records and jobs"

    @property
    def login_form(self):
        return OTPAdminAuthenticationForm if settings.ADMIN_REQUIRE_OTP else AdminAuthenticationForm

    @property
    def login_template(self):
        return "otp/admin111/login.html" if settings.ADMIN_REQUIRE_OTP else None

    def has_permission(self, request) -> bool:
        if not super().has_permission(request):
            return False
        # A session that logged in with a password only is not enough when OTP is required.
        return not settings.ADMIN_REQUIRE_OTP or request.user.is_verified()
