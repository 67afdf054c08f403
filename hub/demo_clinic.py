"""The demo's second tenant: an ambulatory clinic on eClinicalWorks (`make demo`, after the home-care one).

It syncs the clinic through Dramatiq (polled and diffed), runs eligibility checks (270 → 271 through
the practice's clearinghouse), drafts claims from finished encounters by a small fee schedule, and
sends them round trip: 837 → 999 → the 835 the clearinghouse makes available → imported, matched
and posted. Everything goes through the same jobs a partner's request would (`perform_write`,
`follow_up_write`) on the in-process worker.
"""

from __future__ import annotations

import time
from collections import Counter
from decimal import Decimal

import httpx
from django.core.management import call_command
from django.db import transaction
from django.db.models import Count

from canonical.kinds import KINDS
from canonical.models import Encounter, Patient
from connectors.choices import WriteStatus
from connectors.models import VendorWrite
from connectors.tasks import perform_write
from connectors.writes import request_write
from hub.worker import ensure_inprocess_worker
from reconciliation.claims_from_encounters import claims_from_encounters
from reconciliation.models import BillingProfile, Claim, ClaimBatch, EligibilityCheck, FeeScheduleEntry, Remittance
from tenants.choices import Capability
from tenants.models import Connection, Credential, Entitlement, Tenant
from tenants.services import create_tenant

CLINIC_SLUG = "demo-clinic"
CLINIC_ACCOUNT = "riverbend.admin"  # TOTP MFA; ehr, healow and rcm modules; write contract
ELIGIBILITY_CHECKS = 30
CLAIMS = 25
FEES = {"99203": "150.00", "99204": "225.00", "99212": "75.00", "99213": "110.00", "99214": "165.00", "99395": "190.00",
        "99396": "205.00", "99397": "220.00", "36415": "15.00", "81002": "12.00", "90686": "35.00", "90471": "25.00",
        "90832": "85.00", "90834": "120.00", "90837": "165.00"}
SOURCE_NAMES = {"patient": "patients", "practitioner": "providers", "location": "facilities", "appointment": "appointments",
                "encounter": "encounters"}


def run_clinic(stdout, sandbox_url: str, account: dict) -> None:
    tenant, connection = set_up_clinic(sandbox_url, account)
    stdout.write(f"\nSyncing eClinicalWorks for tenant '{tenant.slug}' (polled and diffed)…")
    call_command("sync", tenant=tenant.slug, wait=True, timeout=110, stdout=stdout)
    state = httpx.get(f"{sandbox_url}/_sandbox/state", timeout=10).json()["eclinicalworks"]
    stdout.write("Clinic records in the hub (sandbox source in brackets):")
    for kind, source in SOURCE_NAMES.items():
        count = KINDS[kind].model.objects.filter(tenant=tenant, deleted_at__isnull=True).count()
        stdout.write(f"  clinic {kind:<13} {count:>6}   [{state.get(source)}]")
    ensure_inprocess_worker()
    check_eligibility(stdout, connection)
    submit_claims(stdout, sandbox_url, tenant, connection)


def set_up_clinic(sandbox_url: str, account: dict) -> tuple[Tenant, Connection]:
    with transaction.atomic():
        tenant = Tenant.objects.filter(slug=CLINIC_SLUG).first() or create_tenant(slug=CLINIC_SLUG, name="Demo Clinic")
        for capability in Capability.values:
            Entitlement.objects.get_or_create(tenant=tenant, connection=None, capability=capability)
        connection, _ = Connection.objects.update_or_create(
            tenant=tenant, vendor="eclinicalworks", display_name="eClinicalWorks — Riverbend Community Health",
            defaults={"base_url": f"{sandbox_url}/ecw", "enabled": True, "options": {"era_poll_s": 0.5}},
        )
        credential, _ = Credential.objects.get_or_create(connection=connection)
        credential.username, credential.password, credential.totp_secret = account["username"], account["password"], account["totp_secret"]
        credential.save()
        BillingProfile.objects.update_or_create(tenant=tenant, defaults={
            "organization_name": "RIVERBEND COMMUNITY HEALTH", "npi": "1508765439", "tax_id": "043219876",
            "address_line1": "100 MAIN ST", "city": "WORCESTER", "state": "MA", "postal_code": "016081234", "phone": "5085550100",
            "submitter_id": "RIVERBEND01", "receiver_id": "SBCLEARINGHOUSE", "receiver_name": "SANDBOX CLEARINGHOUSE"})
        for code, charge in FEES.items():
            FeeScheduleEntry.objects.update_or_create(tenant=tenant, procedure_code=code, modifier="", defaults={"charge": Decimal(charge)})
    return tenant, connection


def run_write(connection: Connection, operation: str, request: dict, key: str, timeout: float = 30) -> VendorWrite:
    write, _ = request_write(connection, operation, request, idempotency_key=key, actor_label="system:demo")
    if write.status == WriteStatus.PENDING:
        perform_write.send(write_id=write.pk)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and VendorWrite.objects.filter(pk=write.pk, status=WriteStatus.PENDING).exists():
            time.sleep(0.1)
    write.refresh_from_db()
    return write


def check_eligibility(stdout, connection: Connection) -> None:
    patients = Patient.objects.filter(source_connection=connection, deleted_at__isnull=True, coverages__isnull=False).distinct()
    tally: Counter[str] = Counter()
    examples: dict[str, EligibilityCheck] = {}
    for patient in patients.order_by("external_id")[:ELIGIBILITY_CHECKS]:
        write = run_write(connection, "check_eligibility", {"patient": str(patient.public_id), "service_type": "30"},
                          f"demo-eligibility-{patient.external_id}")
        check = EligibilityCheck.objects.filter(public_id=write.record_public_id).first()
        status = check.status if check else f"{write.status} ({write.rule})"
        tally[status] += 1
        if check is not None:
            examples.setdefault(status, check)
    stdout.write(f"Eligibility checks (270 → 271): {len(patients[:ELIGIBILITY_CHECKS])} patients: "
                 + ", ".join(f"{n} {status}" for status, n in sorted(tally.items())))
    for status, check in sorted(examples.items()):
        amounts = f", copay {check.copay}" if check.copay is not None else ""
        stdout.write(f"  {status:<10} {check.payer_name} {check.plan_name}{amounts}{' — ' + check.reason if check.reason else ''}")


def submit_claims(stdout, sandbox_url: str, tenant: Tenant, connection: Connection) -> None:
    encounters = Encounter.objects.filter(source_connection=connection, deleted_at__isnull=True).order_by("period_start")[:CLAIMS * 2]
    drafted = claims_from_encounters(tenant, encounters)
    stdout.write(f"Claims drafted from encounters: {len(drafted.claims)} ({len(drafted.problems)} encounters not billable)")
    write = run_write(connection, "submit_claims", {"kind": "P"}, "demo-claims-837p", timeout=60)
    if write.status != WriteStatus.SUCCEEDED:
        stdout.write(f"Claim submission {write.status} ({write.rule}): {write.error}")
        return
    batch = ClaimBatch.objects.get(public_id=write.record_public_id)
    stdout.write(f"837P batch {batch.control_number} sent to the clearinghouse ({batch.clearinghouse_reference}); "
                 f"999: {batch.status}, {batch.claims.filter(status='accepted').count()} claims accepted")
    httpx.post(f"{sandbox_url}/_sandbox/mutate", json={"vendor": "clearinghouse", "release_eras": True}, timeout=10)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not ClaimBatch.objects.filter(pk=batch.pk, era_file__isnull=False).exists():
        time.sleep(0.2)
    batch.refresh_from_db()
    if batch.era_file_id is None:
        stdout.write("The 835 did not arrive within 60 s.")
        return
    remittances = Remittance.objects.filter(file_id=batch.era_file_id)
    statuses = dict(Claim.objects.filter(batch=batch).values_list("status").annotate(n=Count("id")))
    for remittance in remittances:
        stdout.write(f"835 {remittance.payer_name} {remittance.payment_method} {remittance.trace_number}: {remittance.payment_amount} "
                     + ("balanced" if remittance.balanced else f"OUT OF BALANCE by {remittance.difference}"))
    stdout.write("Claims after the 835: " + ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())))
