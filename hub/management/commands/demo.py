"""`make demo`: the main job on the embedded default, from a fresh clone.

Sets up the database, starts the vendor sandbox (or uses one at --sandbox-url), creates the `demo`
tenant with its WellSky connection, credential (with a TOTP secret), entitlements and code
mappings, runs a full sync through Dramatiq, books an authorization-checked appointment, prints a
summary; then the `demo-clinic` tenant on eClinicalWorks: a polled sync, eligibility checks and a
claim round trip (837 → 999 → 835 → matched and posted, `hub.demo_clinic`); then serves the admin
and API (unless --no-serve) and says how to log in.
"""

from __future__ import annotations

import logging
import secrets
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.db.models import Count

from canonical.authorizations import units_for, units_used
from canonical.kinds import KINDS
from canonical.models import Authorization
from connectors.choices import WriteStatus
from connectors.models import FailedJob, SyncRun, VendorWrite
from connectors.tasks import perform_write
from connectors.writes import request_write
from hub.demo_clinic import CLINIC_ACCOUNT, run_clinic
from hub.worker import ensure_inprocess_worker
from tenants.choices import Capability, MappingCategory
from tenants.models import ApiKey, CodeMapping, Connection, Credential, Entitlement, PartnerApp, Tenant
from tenants.services import create_tenant, issue_api_key, revoke_api_keys

DEMO_SLUG = "demo"
DEMO_SEED = 1
DEMO_SCALE = 120
DEMO_ACCOUNT = "sunrise.admin"  # the sandbox's WellSky account with TOTP MFA and write access
DEMO_MAPPINGS = [
    (MappingCategory.SERVICE_CODE, "wellsky", "PCS", "HCPCS", "T1019", "Personal care services, per 15 minutes"),
    (MappingCategory.SERVICE_CODE, "wellsky", "HHA", "HCPCS", "S9122", "Home health aide, per hour"),
    (MappingCategory.SERVICE_CODE, "wellsky", "SN", "HCPCS", "G0299", "Skilled nursing visit, RN"),
    (MappingCategory.SERVICE_CODE, "wellsky", "PT", "HCPCS", "G0151", "Physical therapy visit"),
    (MappingCategory.SERVICE_CODE, "wellsky", "RESP", "HCPCS", "T1005", "Respite care, per 15 minutes"),
    (MappingCategory.VISIT_TYPE, "wellsky", "HOME", "hub", "in-person", "Home visit"),
]


class Command(BaseCommand):
    help = "Run the main job on the embedded default (sandbox vendors, full sync, a booking), then serve the admin."

    def add_arguments(self, parser):
        parser.add_argument("--no-serve", action="store_true", help="run the job and exit without serving")
        parser.add_argument("--port", type=int, default=8000)
        parser.add_argument("--sandbox-url", help="use a sandbox already running there (default: start one)")

    def handle(self, no_serve: bool, port: int, sandbox_url: str | None, **options):
        if not settings.EMBEDDED:
            raise CommandError("The demo runs on the embedded default only (unset HUB_PROFILE/SECRET_KEY).")
        started = time.monotonic()
        logging.getLogger("connectors.http").setLevel(logging.WARNING)  # one line per vendor call is for operators, not the demo
        call_command("migrate", interactive=False, verbosity=0)
        sandbox = None
        if not sandbox_url:
            sandbox, sandbox_url = start_sandbox()
        try:
            self.run_job(sandbox_url.rstrip("/"), started, port, no_serve)
        finally:
            if sandbox is not None:
                sandbox.terminate()
                sandbox.wait(timeout=10)

    def run_job(self, sandbox_url: str, started: float, port: int, no_serve: bool) -> None:
        accounts = {a["username"]: a for a in fetch(f"{sandbox_url}/_sandbox/accounts")["wellsky"]}
        account = accounts[DEMO_ACCOUNT]
        tenant, connection = set_up_tenant(sandbox_url, account)
        password, key = set_up_people(tenant)
        self.stdout.write(f"Sandbox at {sandbox_url}; syncing WellSky for tenant '{tenant.slug}' through Dramatiq…")
        call_command("sync", tenant=tenant.slug, wait=True, timeout=110, stdout=self.stdout)
        self.book_appointments(connection)
        self.summarize(tenant, connection, started, fetch(f"{sandbox_url}/_sandbox/state")["wellsky"])
        clinic_accounts = {a["username"]: a for a in fetch(f"{sandbox_url}/_sandbox/accounts")["eclinicalworks"]}
        run_clinic(self.stdout, sandbox_url, clinic_accounts[CLINIC_ACCOUNT])
        self.stdout.write(f"Demo job done in {time.monotonic() - started:.1f}s.")
        self.stdout.write(
            f"\n  Admin:        http://127.0.0.1:{port}/admin/   user: admin   password: {password}\n"
            f"  API:          http://127.0.0.1:{port}/api/v1/  docs: http://127.0.0.1:{port}/api/docs/\n"
            f"  FHIR R4:      http://127.0.0.1:{port}/fhir/r4/Patient (same key)\n"
            f"  Partner key:  {key}\n"
            f"  Try:          curl -H 'Authorization: Bearer {key}' http://127.0.0.1:{port}/fhir/r4/Patient?_count=2\n"
            f"  Sandbox:      {sandbox_url}/_sandbox/state (POST /_sandbox/mutate, then 'Sync now' in the admin)\n"
            "The password and key are shown once; run `make demo` again for new ones.\n"
        )
        if not no_serve:
            call_command("runserver", f"127.0.0.1:{port}", use_reloader=False)

    def book_appointments(self, connection: Connection) -> None:
        """One booking that fits its authorization, and one refused locally for exceeding it."""
        found = find_bookable(connection)
        if found is None:
            self.stdout.write("No patient with authorization units left to book against; skipped the booking.")
            return
        authorization, practitioner, start = found
        ensure_inprocess_worker()
        minutes_per_unit = {"15min": 15, "hour": 60}[authorization.unit_type]
        for label in ("fits the authorization", "exceeds the authorization"):
            if label.startswith("fits"):
                length = timedelta(hours=1)
            else:  # what is left, and an hour more: refused by the hub before WellSky is asked
                left = authorization.units_allowed - units_used(authorization)
                length = timedelta(minutes=float(left) * minutes_per_unit + 60)
            request = {"patient": str(authorization.patient.public_id), "practitioner": str(practitioner.public_id),
                       "start": start.isoformat(), "end": (start + length).isoformat(),
                       "service_code": authorization.service_codes[0], "description": "Booked by the Switchboard demo"}
            write, _ = request_write(connection, "book_appointment", request, idempotency_key=f"demo-{label}-{start:%Y%m%d%H%M}",
                                     actor_label="system:demo")
            if write.status == WriteStatus.PENDING:
                perform_write.send(write_id=write.pk)
                deadline = time.monotonic() + 30
                while time.monotonic() < deadline and VendorWrite.objects.filter(pk=write.pk, status=WriteStatus.PENDING).exists():
                    time.sleep(0.2)
            write.refresh_from_db()
            outcome = (f"booked: appointment {write.record_public_id} (WellSky {write.external_id})" if write.status == WriteStatus.SUCCEEDED
                       else f"{write.status} ({write.rule}): {write.error}")
            self.stdout.write(f"Booking that {label} ({length} of {authorization.service_codes[0]}): {outcome}")
            start += timedelta(days=1)

    def summarize(self, tenant: Tenant, connection: Connection, started: float, source: dict[str, int]) -> None:
        self.stdout.write("\nRecords in the hub (sandbox source in brackets):")
        source_names = {"patient": "patients", "practitioner": "practitioners", "location": "locations", "authorization": "authorizations",
                        "appointment": "appointments", "encounter": "encounters", "care_plan": "care_plans", "referral": "referrals"}
        for kind, spec in KINDS.items():
            count = spec.model.objects.filter(tenant=tenant, deleted_at__isnull=True).count()
            if count or kind in source_names:
                truth = source.get(source_names.get(kind, ""), None)
                self.stdout.write(f"  {kind:<14} {count:>6}" + (f"   [{truth}]" if truth is not None else ""))
        runs = SyncRun.objects.filter(connection=connection).values("status").annotate(n=Count("id"))
        self.stdout.write("Sync runs: " + ", ".join(f"{r['n']} {r['status']}" for r in runs))
        failed = FailedJob.objects.filter(tenant=tenant, status="open").count()
        self.stdout.write(f"Failed jobs open: {failed}")


def start_sandbox() -> tuple[subprocess.Popen, str]:
    """`manage.py sandbox` in a process of its own (the hub never imports it), on a free port."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    manage = Path(settings.BASE_DIR) / "manage.py"
    command = [sys.executable, str(manage), "sandbox", "--port", str(port), "--seed", str(DEMO_SEED), "--scale", str(DEMO_SCALE)]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL)  # noqa: S603 - our own program with fixed arguments
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise CommandError(f"the sandbox exited with status {process.returncode}")
        try:
            httpx.get(f"{url}/_sandbox/state", timeout=1).raise_for_status()
            return process, url
        except httpx.HTTPError:
            time.sleep(0.2)
    process.terminate()
    raise CommandError("the sandbox did not start within 30 s")


def fetch(url: str) -> dict:
    try:
        response = httpx.get(url, timeout=10)
        response.raise_for_status()
    except httpx.HTTPError as exc:
        raise CommandError(f"the sandbox at {url} did not answer: {exc}") from None
    return response.json()


def set_up_tenant(sandbox_url: str, account: dict) -> tuple[Tenant, Connection]:
    with transaction.atomic():
        tenant = Tenant.objects.filter(slug=DEMO_SLUG).first() or create_tenant(slug=DEMO_SLUG, name="Demo Home Care")
        for capability in Capability.values:
            Entitlement.objects.get_or_create(tenant=tenant, connection=None, capability=capability)
        for category, system, code, target_system, target_code, display in DEMO_MAPPINGS:
            CodeMapping.objects.update_or_create(
                tenant=tenant, category=category, source_system=system, source_code=code,
                defaults={"target_system": target_system, "target_code": target_code, "display": display},
            )
        connection, _ = Connection.objects.update_or_create(
            tenant=tenant, vendor="wellsky", display_name="WellSky — Sunrise Home Care",
            defaults={"base_url": f"{sandbox_url}/wellsky", "enabled": True},
        )
        credential, _ = Credential.objects.get_or_create(connection=connection)
        credential.username, credential.password, credential.totp_secret = account["username"], account["password"], account["totp_secret"]
        credential.save()
    return tenant, connection


def set_up_people(tenant: Tenant) -> tuple[str, str]:
    password = secrets.token_urlsafe(12)
    with transaction.atomic():
        user, _ = get_user_model().objects.get_or_create(username="admin", defaults={"email": "admin@localhost"})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        app, _ = PartnerApp.objects.get_or_create(tenant=tenant, name="Demo partner")
        revoke_api_keys(ApiKey.objects.filter(partner_app=app))  # one live demo key at a time
        issued = issue_api_key(partner_app=app, scopes=["*"], name="demo")
    return password, issued.plaintext


def find_bookable(connection: Connection):
    """An active authorization with an hour of units left, its patient's usual practitioner, and a
    weekday morning slot inside the authorization's dates; None when there is none."""
    from canonical.models import Appointment

    candidates = (Authorization.objects.filter(source_connection=connection, status="active", deleted_at__isnull=True,
                                               unit_type__in=("15min", "hour"))
                  .select_related("patient").order_by("pk"))
    for authorization in candidates[:200]:
        last = Appointment.objects.filter(authorization=authorization, practitioner__isnull=False).order_by("-start").first()
        if last is None:
            continue
        start = (last.start + timedelta(days=1)).replace(minute=0, second=0, microsecond=0)
        if not authorization.start_date <= start.date() <= authorization.end_date:
            continue
        if authorization.units_allowed - units_used(authorization) >= units_for(authorization.unit_type, start, start + timedelta(hours=1)):
            return authorization, last.practitioner, start
    return None

