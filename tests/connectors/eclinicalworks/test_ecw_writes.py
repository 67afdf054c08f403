"""Writes to eClinicalWorks over real HTTP: booking in a provider's template (once per request,
however often it is sent), refusals by rule with their figures, telehealth behind an entitlement
and a licensed module, eligibility through the clearinghouse (active, inactive, unknown member),
and the claim round trip 837 → 999 → 835 → import, match and posting. Entitlements are granted
per test: each write needs its own."""

from __future__ import annotations

import time
from datetime import date, datetime, timedelta
from decimal import Decimal

import httpx
import pytest

from canonical.models import Appointment, ChangeEvent, Coverage, Encounter, Location, Patient, Practitioner
from connectors import writes
from connectors.auth_flows import relay_token
from connectors.choices import WriteStatus
from connectors.eclinicalworks.connector import EClinicalWorksConnector
from connectors.http import CALLS
from connectors.models import VendorSession
from connectors.registry import connector_for
from connectors.writes import perform_write, request_write, resolve
from formats.x12.era835 import parse_835
from reconciliation.choices import ClaimStatus, EligibilityStatus, PostingKind
from reconciliation.claims_from_encounters import claims_from_encounters
from reconciliation.models import BillingProfile, Claim, ClaimBatch, EligibilityCheck, FeeScheduleEntry, RemittanceClaim
from sandbox.clearinghouse.vendor import CLEARINGHOUSE_ID
from sandbox.ecw import data as ecw_data
from sandbox.ecw.billing import SUBMITTER_ID
from tenants.choices import Capability, MappingCategory
from tests.connectors.eclinicalworks.conftest import connect, entitle, sync_all, vendor
from tests.connectors.eclinicalworks.expect import expected_appointment, live_source
from tests.factories import CodeMappingFactory

pytestmark = pytest.mark.django_db

LOCAL = ecw_data.LOCAL_ZONE


def write(connection, operation, request, key="k-1"):
    row, _ = request_write(connection, operation, request, idempotency_key=key, actor_label="partner:front-desk")
    return perform_write(row.pk)


def vendor_calls() -> int:
    return sum(n for (name, _), n in CALLS.items() if name == "eclinicalworks")


def appointments_at_vendor(control) -> int:
    return control.get("/_sandbox/state").json()["eclinicalworks"]["appointments"]


def public(model, connection, external_id: str) -> str:
    return str(model.objects.get(source_connection=connection, external_id=external_id).public_id)


@pytest.fixture
def portal(sandbox, accounts):
    """The practice's own session on the portal (riverbend.api, no MFA), to look up open slots."""
    account = accounts["riverbend.api"]
    with httpx.Client(base_url=f"{sandbox.url}/ecw", timeout=10) as client:
        opened = client.post("/authenticate", json={"username": account["username"], "password": account["password"]})
        client.headers["Authorization"] = f"Bearer {opened.json()['session_token']}"
        yield client


def free_slot(portal, *, edition="primary_care", telehealth=False, skip=0) -> dict:
    """An open slot of a provider of `edition` in the days to come, as healow lists it (GET /healow/slots)."""
    providers = portal.get("/providers", params={"page_size": 500}).json()["items"]
    for provider in providers:
        if provider["edition"] != edition or (telehealth and not provider["telehealth_enabled"]):
            continue
        for ahead in range(1, 21):
            day = (datetime.now(LOCAL) + timedelta(days=ahead)).date()
            slots = portal.get("/healow/slots", params={"provider_id": provider["id"], "date": day.isoformat()}).json()["slots"]
            for slot in slots:
                if skip:
                    skip -= 1
                    continue
                visit_types = [v for v in slot["visit_types"] if not telehealth or v != "PE"]
                return {**slot, "provider_id": provider["id"], "visit_type": visit_types[0], "provider": provider}
    raise AssertionError(f"no open {edition} slot in the next three weeks")


def booking(connection, patient_id: str, slot: dict, **extra) -> dict:
    return {"patient": public(Patient, connection, patient_id), "practitioner": public(Practitioner, connection, slot["provider_id"]),
            "location": public(Location, connection, slot["facility_id"]), "start": slot["start"], "end": slot["end"],
            "service_code": slot["visit_type"], "description": "Booked by the partner app", **extra}


@pytest.fixture
def booker(tenant_a, sandbox, accounts):
    """riverbend.admin, with the reads and appointments.write (not telehealth.write)."""
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"])
    entitle(tenant_a, Capability.APPOINTMENTS_WRITE)
    sync_all(connection, resources=["facilities", "providers", "patients", "appointments"])
    return connection


def forward_codes(monkeypatch, control, client, connection, channel: str) -> None:
    """While the login waits for a code, the SMS gateway / mail forwarder posts what it received to the hub's relay."""
    forwarded: set[str] = set()

    def forward(seconds):
        for message in control.get("/_sandbox/outbox", params={"channel": channel}).json()["messages"]:
            if message["text"] not in forwarded:
                forwarded.add(message["text"])
                answer = client.post(f"/hooks/mfa/{connection.public_id}/?channel={channel}", {"text": message["text"]},
                                     HTTP_X_RELAY_TOKEN=relay_token(connection))
                assert answer.status_code in (200, 201, 202), answer.content
        time.sleep(min(seconds, 0.05))

    monkeypatch.setattr(EClinicalWorksConnector, "mfa_sleep", staticmethod(forward))


# --- booking ----------------------------------------------------------------------------------------
def test_booking_in_a_free_template_slot_is_written_and_kept(booker, sandbox, control, portal, tenant_a):
    slot = free_slot(portal)
    before = appointments_at_vendor(control)

    done = write(booker, "book_appointment", booking(booker, "PAT0000007", slot))

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    assert appointments_at_vendor(control) == before + 1
    at_vendor = live_source(sandbox, "appointments")[done.external_id]
    assert (at_vendor["patient_id"], at_vendor["provider_id"], at_vendor["facility_id"], at_vendor["start"], at_vendor["visit_type"],
            at_vendor["status"], at_vendor["telehealth"], at_vendor["booked_via"], at_vendor["reference"]) == (
        "PAT0000007", slot["provider_id"], slot["facility_id"], slot["start"], slot["visit_type"], "scheduled", False, "api",
        f"switchboard-{done.public_id}")
    appointment = Appointment.objects.get(public_id=done.record_public_id)
    held = {"patient": appointment.patient.external_id, "practitioner": appointment.practitioner.external_id,
            "location": appointment.location.external_id, "start": appointment.start, "end": appointment.end, "status": appointment.status,
            "visit_type": appointment.visit_type, "service_code": appointment.service_code, "description": appointment.description}
    assert held == expected_appointment(at_vendor)
    assert (appointment.status, appointment.description) == ("booked", "Booked by the partner app")
    events = ChangeEvent.objects.filter(tenant=tenant_a).count()
    assert sync_all(booker, resources=["appointments"])[0].updated == 0  # the next poll finds it as the write kept it
    assert ChangeEvent.objects.filter(tenant=tenant_a).count() == events


def test_the_same_booking_sent_twice_books_once(booker, sandbox, control, portal):
    """eClinicalWorks has no idempotency keys: the write id goes as the booking's `reference`, and a
    repeat is answered 203 with the appointment the first one made."""
    slot = free_slot(portal)
    connector = connector_for(booker)
    payload = resolve(booker, booking(booker, "PAT0000011", slot))
    before, refused_before = appointments_at_vendor(control), CALLS[("eclinicalworks", "4xx")]

    first = connector.write("book_appointment", payload, idempotency_key="switchboard-retry-1")
    again = connector.write("book_appointment", payload, idempotency_key="switchboard-retry-1")

    assert again.external_id == first.external_id
    assert again.record["reference"] == "switchboard-retry-1"
    assert CALLS[("eclinicalworks", "4xx")] == refused_before + 1  # the repeat was answered 203 (409), and that was the answer
    assert appointments_at_vendor(control) == before + 1


def test_a_booking_whose_answer_was_lost_is_retried_and_books_once(booker, sandbox, control, portal, monkeypatch):
    slot = free_slot(portal)
    before = appointments_at_vendor(control)
    send = httpx.Client.send
    lost = []

    def answer_lost_once(self, request, **kwargs):
        response = send(self, request, **kwargs)
        if request.url.path == "/ecw/create_appointment" and not lost:
            lost.append(response.status_code)  # eClinicalWorks booked it; the answer never came back
            response.close()
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return response

    monkeypatch.setattr(httpx.Client, "send", answer_lost_once)

    done = write(booker, "book_appointment", booking(booker, "PAT0000012", slot))

    assert lost == [201]
    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    assert appointments_at_vendor(control) == before + 1
    assert Appointment.objects.filter(source_connection=booker, external_id=done.external_id).count() == 1
    assert live_source(sandbox, "appointments")[done.external_id]["reference"] == f"switchboard-{done.public_id}"


def test_bookings_under_dropped_answers_each_book_once(booker, sandbox, control, portal):
    slots = [free_slot(portal, skip=n) for n in range(3)]
    before = appointments_at_vendor(control)
    control.post("/_sandbox/faults", json={"drop_rate": 0.4})  # answers lost before and after eClinicalWorks acted

    done = [write(booker, "book_appointment", booking(booker, f"PAT00000{20 + n}", slot), key=f"drop-{n}") for n, slot in enumerate(slots)]

    control.post("/_sandbox/faults", json={"drop_rate": 0})
    assert [d.status for d in done] == [WriteStatus.SUCCEEDED] * 3
    assert appointments_at_vendor(control) == before + 3
    assert len({d.external_id for d in done}) == 3


def test_a_slot_outside_the_template_is_refused_with_the_rule_and_figures(booker, control, portal):
    slot = free_slot(portal)
    start = datetime.fromisoformat(slot["start"]).replace(hour=6, minute=0)  # before the practice opens that day
    outside = {**slot, "start": start.isoformat(), "end": (start + timedelta(minutes=slot["slot_minutes"])).isoformat()}
    before = appointments_at_vendor(control)

    done = write(booker, "book_appointment", booking(booker, "PAT0000007", outside))

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "outside_provider_template")
    assert done.details == {"vendor_code": "301", "provider_id": slot["provider_id"], "facility_id": slot["facility_id"],
                            "start": start.isoformat()}
    assert done.error == ("eClinicalWorks refused: the slot is outside the provider's template at that facility "
                          f"(provider id {slot['provider_id']}, facility id {slot['facility_id']}, start {start.isoformat()})")
    assert appointments_at_vendor(control) == before


def test_a_taken_slot_and_a_wrong_visit_type_are_refused_by_name(booker, portal):
    slot = free_slot(portal)
    assert write(booker, "book_appointment", booking(booker, "PAT0000007", slot), key="first").status == WriteStatus.SUCCEEDED

    taken = write(booker, "book_appointment", booking(booker, "PAT0000008", slot), key="second")
    assert (taken.status, taken.rule, taken.details["vendor_code"]) == (WriteStatus.REFUSED, "slot_already_booked", "303")

    other = free_slot(portal, skip=1)
    wrong = write(booker, "book_appointment", booking(booker, "PAT0000008", {**other, "visit_type": "BH-INT"}), key="third")
    assert (wrong.status, wrong.rule) == (WriteStatus.REFUSED, "visit_type_not_allowed")
    assert set(wrong.details["allowed"]) == set(other["visit_types"])


def test_telehealth_needs_the_telehealth_entitlement_before_any_call(booker, portal):
    slot = free_slot(portal, edition="behavioral_health", telehealth=True)
    calls = vendor_calls()

    done = write(booker, "book_appointment", booking(booker, "PAT0000009", slot, visit_type="telehealth"))

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "entitlement_missing")
    assert Capability.TELEHEALTH_WRITE in done.error and done.details == {"capability": Capability.TELEHEALTH_WRITE}
    assert vendor_calls() == calls  # eClinicalWorks never heard of it


def test_telehealth_with_the_entitlement_is_booked_through_healow(booker, sandbox, portal, tenant_a):
    entitle(tenant_a, Capability.TELEHEALTH_WRITE)
    slot = free_slot(portal, edition="behavioral_health", telehealth=True)

    done = write(booker, "book_appointment", booking(booker, "PAT0000009", slot, visit_type="telehealth"))

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    at_vendor = live_source(sandbox, "appointments")[done.external_id]
    assert (at_vendor["telehealth"], at_vendor["booked_via"], at_vendor["healow"] is not None) == (True, "healow", True)
    assert Appointment.objects.get(public_id=done.record_public_id).visit_type == "telehealth"


def test_telehealth_from_an_account_without_healow_is_refused_by_eclinicalworks(tenant_a, sandbox, control, accounts, portal, client,
                                                                                monkeypatch):
    connection = connect(tenant_a, sandbox, accounts["riverbend.billing"], options={"mfa_timeout_s": 10})  # ehr and rcm, no healow
    entitle(tenant_a, Capability.APPOINTMENTS_WRITE, Capability.TELEHEALTH_WRITE)
    forward_codes(monkeypatch, control, client, connection, "email")
    sync_all(connection, resources=["facilities", "providers", "patients"])
    slot = free_slot(portal, edition="behavioral_health", telehealth=True)
    before = appointments_at_vendor(control)

    done = write(connection, "book_appointment", booking(connection, "PAT0000009", slot, visit_type="telehealth"))

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "module_not_entitled")
    assert done.details == {"vendor_code": "410", "module": "healow"}
    assert done.error.startswith("eClinicalWorks refused: the practice has not licensed the module this needs")
    assert appointments_at_vendor(control) == before


def test_a_read_only_account_cannot_book(tenant_a, sandbox, control, accounts, portal):
    connection = connect(tenant_a, sandbox, accounts["riverbend.viewer"])
    entitle(tenant_a, Capability.APPOINTMENTS_WRITE)
    sync_all(connection, resources=["facilities", "providers", "patients"])

    done = write(connection, "book_appointment", booking(connection, "PAT0000007", free_slot(portal)))

    assert (done.status, done.rule, done.details["vendor_code"]) == (WriteStatus.REFUSED, "write_not_permitted", "411")


def test_booking_without_appointments_write_is_refused_before_any_call(tenant_a, sandbox, accounts, portal):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"])  # reads only
    sync_all(connection, resources=["facilities", "providers", "patients"])
    calls = vendor_calls()

    done = write(connection, "book_appointment", booking(connection, "PAT0000007", free_slot(portal)))

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "entitlement_missing")
    assert vendor_calls() == calls


# --- eligibility --------------------------------------------------------------------------------------
def patient_of_kind(sandbox, kind: str) -> str:
    """A patient whose payer holds them as `kind` (active, inactive, unknown) or who is self-pay (none)."""
    practice = vendor(sandbox).practice
    index = next(i for i in range(practice.scale) if practice.coverage_kind(i) == kind)
    return practice.ref("patients", index)


@pytest.fixture
def checker(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"])
    entitle(tenant_a, Capability.ELIGIBILITY_CHECK)
    sync_all(connection, resources=["facilities", "patients", "coverage"])
    return connection


def test_eligibility_of_an_active_member_names_the_plan_and_amounts(checker, sandbox):
    patient_id = patient_of_kind(sandbox, "active")
    practice = vendor(sandbox).practice
    payer = practice.payer_view(practice.index("patients", patient_id))  # what the payer holds
    chart = live_source(sandbox, "patients")[patient_id]["coverage"][0]

    done = write(checker, "check_eligibility", {"patient": public(Patient, checker, patient_id), "service_date": date.today().isoformat()})

    assert (done.status, done.error, done.record_kind) == (WriteStatus.SUCCEEDED, "", "eligibility_check")
    check = EligibilityCheck.objects.get(public_id=done.record_public_id)
    assert check.status == EligibilityStatus.ACTIVE
    assert (check.payer_name, check.payer_id, check.member_id) == (chart["payer_name"], chart["payer_id"], chart["member_id"])
    assert check.plan_name == payer["plan_name"] == chart["plan_name"]
    assert (check.copay, check.deductible) == (payer["copay"], payer["deductible"])
    assert (check.coverage_start, check.coverage_end) == (payer["coverage_start"], None)
    assert check.coverage == Coverage.objects.get(source_connection=checker, external_id=f"{patient_id}:1")
    assert check.trace_number == done.external_id != ""
    assert check.request_x12.startswith("ISA") and check.response_x12.startswith("ISA")
    assert check.answered_at is not None


def test_eligibility_of_an_inactive_member(checker, sandbox):
    patient_id = patient_of_kind(sandbox, "inactive")
    practice = vendor(sandbox).practice
    payer = practice.payer_view(practice.index("patients", patient_id))  # coverage that ended before today

    done = write(checker, "check_eligibility", {"patient": public(Patient, checker, patient_id)})

    check = EligibilityCheck.objects.get(public_id=done.record_public_id)
    assert check.status == EligibilityStatus.INACTIVE
    assert check.plan_name == payer["plan_name"]
    assert check.coverage_end == payer["coverage_end"] < check.service_date


def test_eligibility_of_a_member_the_payer_does_not_know(checker, sandbox):
    patient_id = patient_of_kind(sandbox, "unknown")

    done = write(checker, "check_eligibility", {"patient": public(Patient, checker, patient_id)})

    check = EligibilityCheck.objects.get(public_id=done.record_public_id)
    assert check.status == EligibilityStatus.NOT_FOUND
    assert check.reason.startswith("AAA ")


def test_eligibility_of_a_self_pay_patient_is_refused_by_name(checker, sandbox):
    done = write(checker, "check_eligibility", {"patient": public(Patient, checker, patient_of_kind(sandbox, "none"))})

    assert (done.status, done.rule, done.details["vendor_code"]) == (WriteStatus.REFUSED, "no_coverage_on_file", "501")
    assert EligibilityCheck.objects.count() == 0


def test_eligibility_without_the_entitlement_is_refused_before_any_call(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"])  # reads only
    sync_all(connection, resources=["facilities", "patients", "coverage"])
    calls = vendor_calls()

    done = write(connection, "check_eligibility", {"patient": public(Patient, connection, patient_of_kind(sandbox, "active"))})

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "entitlement_missing")
    assert Capability.ELIGIBILITY_CHECK in done.error
    assert vendor_calls() == calls and EligibilityCheck.objects.count() == 0


def test_eligibility_from_an_account_without_the_rcm_module_is_refused_by_eclinicalworks(tenant_a, sandbox, control, accounts, client,
                                                                                         monkeypatch):
    connection = connect(tenant_a, sandbox, accounts["riverbend.frontdesk"], options={"mfa_timeout_s": 10})  # ehr and healow
    entitle(tenant_a, Capability.ELIGIBILITY_CHECK)
    forward_codes(monkeypatch, control, client, connection, "sms")
    sync_all(connection, resources=["facilities", "patients", "coverage"])

    done = write(connection, "check_eligibility", {"patient": public(Patient, connection, patient_of_kind(sandbox, "active"))})

    assert (done.status, done.rule, done.details) == (WriteStatus.REFUSED, "module_not_entitled", {"vendor_code": "410", "module": "rcm"})


# --- claims: 837 → 999 → 835 ------------------------------------------------------------------------
def billing_setup(tenant) -> None:
    """The practice's billing profile at its clearinghouse, and its fees (eClinicalWorks' CPT charges)."""
    BillingProfile.objects.create(
        tenant=tenant, organization_name=ecw_data.PRACTICE_NAME, npi=ecw_data.PRACTICE_NPI, tax_id=ecw_data.PRACTICE_TAX_ID,
        address_line1="100 MAIN ST", city="WORCESTER", state="MA", postal_code="016081234", phone=ecw_data.PRACTICE_PHONE,
        submitter_id=SUBMITTER_ID, receiver_id=CLEARINGHOUSE_ID, receiver_name="SANDBOX CLEARINGHOUSE")
    FeeScheduleEntry.objects.bulk_create([FeeScheduleEntry(tenant=tenant, procedure_code=code, charge=charge)
                                          for code, (_, charge) in ecw_data.CPT.items()])


@pytest.fixture
def biller(tenant_a, sandbox, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"], options={"era_poll_s": 0.1})
    entitle(tenant_a, Capability.CLAIMS_SUBMIT)
    sync_all(connection)
    billing_setup(tenant_a)
    return connection


def draft_claims(tenant, connection) -> list[Claim]:
    drafted = claims_from_encounters(tenant, Encounter.objects.filter(source_connection=connection).order_by("external_id"))
    assert drafted.claims
    return drafted.claims


def test_a_claim_batch_goes_837_999_835_and_is_matched_and_posted(biller, tenant_a, sandbox, control):
    claims = draft_claims(tenant_a, biller)

    done = write(biller, "submit_claims", {"kind": "P"}, key="batch-1")

    assert (done.status, done.error, done.record_kind) == (WriteStatus.SUCCEEDED, "", "claim_batch")
    batch = ClaimBatch.objects.get(public_id=done.record_public_id)
    assert batch.clearinghouse_reference == done.external_id != ""
    assert batch.status == "accepted" and batch.ack_body.startswith("ISA")  # the 999, applied at once
    assert {c.status for c in Claim.objects.filter(batch=batch)} == {ClaimStatus.ACCEPTED}
    assert Claim.objects.filter(batch=batch).count() == len(claims)
    at_clearinghouse = control.get(f"/clearinghouse/batches/{done.external_id}").json()
    assert (at_clearinghouse["status"], at_clearinghouse["claims"]) == ("accepted", len(claims))

    # the 835 is not ready yet: the follow-up says when to look again
    assert writes.follow_up(done.pk, 0) == pytest.approx(0.1)
    control.post("/_sandbox/mutate", json={"vendor": "clearinghouse", "release_eras": True})
    for step in range(1, 50):
        delay = writes.follow_up(done.pk, step)
        if delay is None:
            break
        time.sleep(delay)
    else:
        raise AssertionError("the 835 was never imported")

    batch.refresh_from_db()
    assert batch.era_file is not None
    era_url = control.get(f"/clearinghouse/batches/{done.external_id}").json()["era_url"]
    era_text = control.get(era_url).text
    assert batch.era_file.body == era_text  # the 835 the clearinghouse holds, as it is
    # each claim ends as the payer's 835 says, with what it posted
    answered = {clp.patient_control_number: clp for remittance in parse_835(era_text) for clp in remittance.claims}
    assert set(answered) == {c.patient_control_number for c in claims}
    statuses = set()
    for claim in Claim.objects.filter(batch=batch).prefetch_related("postings"):
        clp = answered[claim.patient_control_number]
        settled = clp.paid + sum((a.amount for a in clp.all_adjustments if a.group in ("CO", "PR", "OA", "PI")), Decimal(0))
        if clp.status_code == "4":
            expected = ClaimStatus.DENIED
        elif settled >= claim.total_charge:
            expected = ClaimStatus.PAID
        else:
            expected = ClaimStatus.PARTIALLY_PAID
        assert claim.status == expected, (claim.patient_control_number, clp.status_code, clp.paid)
        statuses.add(claim.status)
        postings = list(claim.postings.all())
        assert postings
        assert sum((p.amount for p in postings if p.kind == PostingKind.PAYMENT), Decimal(0)) == clp.paid
        assert sum((p.amount for p in postings if p.kind == PostingKind.PATIENT_RESPONSIBILITY), Decimal(0)) == clp.patient_responsibility
        if clp.status_code == "4":
            assert {p.reason for p in postings if p.kind == PostingKind.DENIAL} == {a.reason for a in clp.all_adjustments if a.group != "PR"}
        assert claim.payer_claim_control_number == clp.payer_claim_control_number
    assert {ClaimStatus.PAID, ClaimStatus.DENIED} <= statuses
    # every answer of the 835 was matched to the claim it names (CLP01 = CLM01), and confirmed
    matches = {(clp.patient_control_number, clp.match.claim.patient_control_number, clp.match.method, clp.match.status)
               for clp in RemittanceClaim.objects.filter(remittance__file=batch.era_file).select_related("match__claim")}
    assert matches == {(c.patient_control_number, c.patient_control_number, "pcn", "confirmed") for c in claims}
    # patients the payer holds as inactive or does not know are denied
    practice = vendor(sandbox).practice
    for claim in Claim.objects.filter(batch=batch).select_related("patient"):
        if practice.coverage_kind(practice.index("patients", claim.patient.external_id)) in ("inactive", "unknown"):
            assert claim.status == ClaimStatus.DENIED
    assert writes.follow_up(done.pk, 60) is None  # imported once: nothing more to do


def test_the_same_submission_sent_again_exports_and_submits_once(biller, tenant_a, control):
    draft_claims(tenant_a, biller)

    first = write(biller, "submit_claims", {"kind": "P"}, key="batch-2")
    again = write(biller, "submit_claims", {"kind": "P"}, key="batch-2")

    assert again.pk == first.pk and again.external_id == first.external_id
    assert ClaimBatch.objects.filter(tenant=tenant_a).count() == 1
    assert control.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 1


def test_nothing_ready_to_submit_is_refused_by_name(biller):
    done = write(biller, "submit_claims", {"kind": "P"}, key="empty")

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "nothing_to_submit")


def test_submitting_claims_without_the_entitlement_is_refused_before_any_call(tenant_a, sandbox, control, accounts):
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"])  # reads only
    sync_all(connection)
    billing_setup(tenant_a)
    draft_claims(tenant_a, connection)
    calls = vendor_calls()

    done = write(connection, "submit_claims", {"kind": "P"}, key="no-licence")

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "entitlement_missing")
    assert Capability.CLAIMS_SUBMIT in done.error
    assert vendor_calls() == calls
    assert ClaimBatch.objects.count() == 0 and not Claim.objects.exclude(status=ClaimStatus.READY).exists()
    assert control.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 0


def test_a_claim_file_whose_answer_was_lost_is_not_filed_twice(biller, tenant_a, control, monkeypatch):
    """The 837 reached the clearinghouse and its answer was lost. Sent again, every claim would be
    filed twice and the payer would deny the second filing as a duplicate (CO-18), which the hub
    would then post over claims the payer paid: the write ends failed instead, naming the batch."""
    claims = draft_claims(tenant_a, biller)
    send = httpx.Client.send
    lost = []

    def answer_lost_once(self, request, **kwargs):
        response = send(self, request, **kwargs)
        if request.url.path == "/ecw/submit_claim" and not lost:
            lost.append(response.status_code)  # filed at the clearinghouse; the answer never came back
            response.close()
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.", request=request)
        return response

    monkeypatch.setattr(httpx.Client, "send", answer_lost_once)

    done = write(biller, "submit_claims", {"kind": "P"}, key="lost-837")

    assert lost == [200]
    assert control.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 1  # filed once
    batch = ClaimBatch.objects.get(tenant=tenant_a)
    assert done.status == WriteStatus.FAILED
    assert f"batch control number {batch.control_number}" in done.error
    assert "check the clearinghouse before sending it again" in done.error
    assert {c.status for c in Claim.objects.filter(pk__in=[c.pk for c in claims])} == {ClaimStatus.SUBMITTED}
    assert perform_write(done.pk).status == WriteStatus.FAILED  # a redelivered job sends nothing
    assert control.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 1


def test_a_claim_file_refused_for_an_ended_session_is_sent_again_once_logged_in(biller, tenant_a, sandbox, control):
    """A 401 filed nothing: the file goes again on the renewed session, and is filed once."""
    draft_claims(tenant_a, biller)
    assert VendorSession.objects.get(connection=biller).logins == 1  # the session the sync opened
    with vendor(sandbox).lock:
        vendor(sandbox).sessions.clear()  # eClinicalWorks ended every session (a restart, an admin's logout)

    done = write(biller, "submit_claims", {"kind": "P"}, key="after-logout")

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    assert control.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 1
    assert VendorSession.objects.get(connection=biller).logins == 2


def test_entitlements_and_records_are_the_tenants_own(booker, tenant_b, sandbox, accounts, portal):
    """tenant_a may book; tenant_b, on the same practice, was granted reads only, and tenant_a cannot
    name tenant_b's copy of a patient."""
    other = connect(tenant_b, sandbox, accounts["riverbend.admin"])
    sync_all(other, resources=["facilities", "providers", "patients"])
    slot = free_slot(portal)

    refused = write(other, "book_appointment", booking(other, "PAT0000007", slot))
    assert (refused.status, refused.rule) == (WriteStatus.REFUSED, "entitlement_missing")

    theirs = booking(booker, "PAT0000007", slot) | {"patient": public(Patient, other, "PAT0000007")}
    crossed = write(booker, "book_appointment", theirs, key="crossed")
    assert (crossed.status, crossed.rule) == (WriteStatus.REFUSED, "unknown_reference")  # no such patient in tenant_a

    booked = write(booker, "book_appointment", booking(booker, "PAT0000007", slot), key="own")
    assert booked.status == WriteStatus.SUCCEEDED
    assert not Appointment.objects.filter(tenant=tenant_b, external_id=booked.external_id).exists()


HUB_VISIT_TYPES = {"NP": "new-patient", "FU": "follow-up", "PE": "annual-physical", "SICK": "same-day", "BH-INT": "bh-intake",
                   "BH-IND": "psychotherapy", "BH-FU": "therapy-follow-up"}


def test_visit_types_are_mapped_on_reading_and_back_on_booking(tenant_a, sandbox, accounts, portal):
    for code, target in HUB_VISIT_TYPES.items():
        CodeMappingFactory(tenant=tenant_a, category=MappingCategory.VISIT_TYPE, source_system="eclinicalworks", source_code=code,
                           target_system="urn:switchboard:visit-type", target_code=target, display=target)
    connection = connect(tenant_a, sandbox, accounts["riverbend.admin"])
    entitle(tenant_a, Capability.APPOINTMENTS_WRITE)
    sync_all(connection, resources=["facilities", "providers", "patients", "appointments"])
    source = live_source(sandbox, "appointments")
    held = dict(Appointment.objects.filter(source_connection=connection).values_list("external_id", "service_code"))
    assert held == {external_id: HUB_VISIT_TYPES[src["visit_type"]] for external_id, src in source.items()}
    slot = free_slot(portal)

    done = write(connection, "book_appointment", booking(connection, "PAT0000007", slot, service_code=HUB_VISIT_TYPES[slot["visit_type"]]))

    assert (done.status, done.error) == (WriteStatus.SUCCEEDED, "")
    assert live_source(sandbox, "appointments")[done.external_id]["visit_type"] == slot["visit_type"]  # eClinicalWorks' own code
    assert Appointment.objects.get(public_id=done.record_public_id).service_code == HUB_VISIT_TYPES[slot["visit_type"]]


def test_a_service_date_that_is_no_date_is_refused_by_name(checker, sandbox):
    done = write(checker, "check_eligibility", {"patient": public(Patient, checker, patient_of_kind(sandbox, "active")),
                                                "service_date": "next tuesday"})

    assert (done.status, done.rule) == (WriteStatus.REFUSED, "invalid_request")
    assert "service_date" in done.error
