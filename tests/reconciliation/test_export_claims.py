"""Exporting ready claims as an 837P: the file passes pyx12, carries the claims' values, the claims
become SUBMITTED once, unwritable claims are skipped with their reason, and a tenant without a
billing profile is told what to set."""

from __future__ import annotations

import io
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.management import CommandError, call_command

from canonical.models import Authorization, Coverage, Encounter, Patient, Practitioner
from canonical.upsert import upsert_records
from reconciliation import claims_export
from reconciliation.choices import ClaimStatus
from reconciliation.claims_export import BillingProfileError, export_ready_claims, next_control_number
from reconciliation.models import BillingProfile, Claim, ClaimBatch, ClaimLine
from tenants.models import AuditEvent
from tests.factories import ConnectionFactory
from tests.formats.x12.test_claim837 import elements, npi, pyx12_errors

pytestmark = pytest.mark.django_db
NOW = datetime(2025, 3, 20, 15, 0, tzinfo=UTC)
DAY = date(2025, 3, 3)


def billing_profile(tenant) -> BillingProfile:
    return BillingProfile.objects.create(
        tenant=tenant, organization_name="RIVERSIDE HOME HEALTH", npi=npi("123456789"), tax_id="123456789",
        address_line1="100 RIVER RD", city="NASHVILLE", state="TN", postal_code="372031234", phone="6155550100",
        submitter_id="RIVERSIDE01", receiver_id="SWITCHBOARD", receiver_name="SWITCHBOARD CLEARINGHOUSE")


@pytest.fixture
def records(tenant_a):
    connection = ConnectionFactory(tenant=tenant_a)
    home = {"address_line1": "1 Elm St", "city": "Nashville", "state": "TN", "postal_code": "37203"}
    upsert_records("patient", [
        {"external_id": "p1", "family_name": "Doe", "given_names": ["Jane", "Q"], "birth_date": "1950-02-03", "sex": "female", **home},
        {"external_id": "p2", "family_name": "Smith", "given_names": ["John"], "birth_date": "1948-07-09", "sex": "male", **home},
        {"external_id": "p3", "family_name": "Roe", "given_names": ["Rita"], "birth_date": "1960-01-01", "sex": "female", **home},
    ], tenant=tenant_a, connection=connection)
    upsert_records("coverage", [
        {"external_id": f"c{n}", "patient": f"p{n}", "payer": "Acme", "payer_id": "ACME01", "member_id": f"W00000000{n}",
         "group_number": "GRP9" if n == 1 else "", "priority": 1, "status": "active", "start_date": "2024-01-01"}
        for n in (1, 2, 3)
    ], tenant=tenant_a, connection=connection)
    upsert_records("authorization", [
        {"external_id": "a1", "patient": "p1", "payer": "Acme", "auth_number": "AUTH77", "service_codes": ["99213", "G0299"],
         "units_allowed": "20", "start_date": "2025-01-01", "end_date": "2025-12-31"},
    ], tenant=tenant_a, connection=connection)
    upsert_records("encounter", [
        {"external_id": "e1", "patient": "p1", "period_start": "2025-03-03T10:00:00-06:00",
         "diagnoses": [{"code": "I10", "rank": 2}, {"code": "E11.9", "rank": 1}]},
        {"external_id": "e2", "patient": "p2", "period_start": "2025-03-03T14:00:00-06:00",
         "diagnoses": [{"code": "J06.9", "rank": 1}]},
    ], tenant=tenant_a, connection=connection)
    return {
        "patients": {p.external_id: p for p in Patient.objects.filter(tenant=tenant_a)},
        "encounters": {e.external_id: e for e in Encounter.objects.filter(tenant=tenant_a)},
        "auth": Authorization.objects.get(tenant=tenant_a, external_id="a1"),
    }


def ready_claim(tenant, patient, pcn, lines, *, encounters=(), status=ClaimStatus.READY, total=None, **fields) -> Claim:
    charge = total if total is not None else sum((Decimal(line[1]) for line in lines), Decimal(0))
    claim = Claim.objects.create(tenant=tenant, patient=patient, coverage=Coverage.objects.get(patient=patient), payer_name="ACME HEALTH PLAN",
                                 payer_id="ACME01", patient_control_number=pcn, total_charge=Decimal(charge), status=status, **fields)
    for position, (code, amount, *rest) in enumerate(lines, start=1):
        options = rest[0] if rest else {}
        ClaimLine.objects.create(claim=claim, position=position, procedure_code=code, charge=Decimal(amount),
                                 units=options.get("units", 1), modifiers=options.get("modifiers", []), service_date=DAY,
                                 authorization=options.get("authorization"), line_control_number=options.get("lcn", ""),
                                 revenue_code=options.get("revenue", ""))
    claim.encounters.set(encounters)
    return claim


@pytest.fixture
def claims(tenant_a, records):
    billing_profile(tenant_a)
    patients, encounters, auth = records["patients"], records["encounters"], records["auth"]
    return {
        "PCN1001": ready_claim(tenant_a, patients["p1"], "PCN1001", [
            ("99213", "125.50", {"modifiers": ["25"], "authorization": auth, "lcn": "PCN1001-1"}),
            ("G0299", "80.25", {"units": 2, "authorization": auth}),
        ], encounters=[encounters["e1"]], place_of_service="12"),
        "PCN1002": ready_claim(tenant_a, patients["p2"], "PCN1002", [("99214", "150")], encounters=[encounters["e2"]],
                               frequency_code="7", payer_claim_control_number="ACM2025020100007"),
        "PCN1003": ready_claim(tenant_a, patients["p3"], "PCN1003", [("99212", "90")]),  # no encounter: no diagnoses
        "PCN1004": ready_claim(tenant_a, patients["p2"], "PCN1004", [("99213", "100")], encounters=[encounters["e2"]],
                               status=ClaimStatus.DRAFT),
    }


def test_ready_claims_are_written_as_an_837p_that_passes_pyx12(tenant_a, claims):
    result = export_ready_claims(tenant_a, now=NOW)

    assert pyx12_errors(result.text) == []
    assert result.control_number == 1
    assert elements(result.text, "CLM") == [
        ["CLM", "PCN1001", "205.75", "", "", "12:B:1", "Y", "A", "Y", "Y"],
        ["CLM", "PCN1002", "150", "", "", "12:B:7", "Y", "A", "Y", "Y"],
    ]
    assert elements(result.text, "SV1") == [
        ["SV1", "HC:99213:25", "125.5", "UN", "1", "", "", "1:2"],
        ["SV1", "HC:G0299", "80.25", "UN", "2", "", "", "1:2"],
        ["SV1", "HC:99214", "150", "UN", "1", "", "", "1"],
    ]
    assert elements(result.text, "HI") == [["HI", "ABK:E119", "ABF:I10"], ["HI", "ABK:J069"]]
    assert elements(result.text, "SBR") == [
        ["SBR", "P", "18", "GRP9", "", "", "", "", "", "CI"], ["SBR", "P", "18", "", "", "", "", "", "", "CI"]]
    assert elements(result.text, "REF") == [
        ["REF", "EI", "123456789"], ["REF", "G1", "AUTH77"], ["REF", "6R", "PCN1001-1"], ["REF", "F8", "ACM2025020100007"]]
    assert ["NM1", "85", "2", "RIVERSIDE HOME HEALTH", "", "", "", "", "XX", npi("123456789")] in elements(result.text, "NM1")
    assert ["NM1", "IL", "1", "Doe", "Jane", "Q", "", "", "MI", "W000000001"] in elements(result.text, "NM1")
    assert elements(result.text, "DMG") == [["DMG", "D8", "19500203", "F"], ["DMG", "D8", "19480709", "M"]]
    assert result.text.startswith("ISA*00*          *00*          *ZZ*RIVERSIDE01    *ZZ*SWITCHBOARD    *250320*1000*^*00501*000000001*0*P*:~")

    assert sorted(result.claim_ids) == sorted([claims["PCN1001"].pk, claims["PCN1002"].pk])
    statuses = dict(Claim.objects.values_list("patient_control_number", "status"))
    assert statuses == {"PCN1001": "submitted", "PCN1002": "submitted", "PCN1003": "ready", "PCN1004": "draft"}
    assert set(Claim.objects.filter(status=ClaimStatus.SUBMITTED).values_list("submitted_at", flat=True)) == {NOW}
    [event] = AuditEvent.objects.filter(tenant=tenant_a, action="export")
    assert (event.object_type, event.detail) == (
        "reconciliation.claim",
        {"format": "837P", "claims": 2, "skipped": 1, "control_number": 1, "batch": str(result.batch.public_id)})
    # the interchange is kept, and each claim knows its batch and transaction set (for the 999)
    batch = ClaimBatch.objects.get()
    assert (batch.kind, batch.control_number, batch.body, batch.status) == ("P", 1, result.text, "sent")
    assert set(Claim.objects.filter(batch=batch).values_list("patient_control_number", "transaction_control_number")) == {
        ("PCN1001", "0001"), ("PCN1002", "0001")}


def test_a_claim_that_cannot_be_written_is_skipped_with_its_reason_and_the_others_export(tenant_a, claims, records):
    patients, encounters = records["patients"], records["encounters"]
    ready_claim(tenant_a, patients["p2"], "PCN1005", [("99213", "100")], encounters=[encounters["e2"]], total="99.99")
    Claim.objects.filter(patient_control_number="PCN1002").update(kind="I")

    result = export_ready_claims(tenant_a, now=NOW)

    assert result.other_kind_ready == 1  # PCN1002 waits for the 837I export
    assert result.problems == [
        "claim PCN1003: no diagnoses: link the claim to an encounter with ICD-10-CM diagnoses",
        "claim PCN1005: total charge 99.99 is not the sum of the line charges 100.00",
    ]
    assert [row[1] for row in elements(result.text, "CLM")] == ["PCN1001"]
    assert pyx12_errors(result.text) == []
    assert sorted(Claim.objects.filter(status=ClaimStatus.READY).values_list("patient_control_number", flat=True)) == [
        "PCN1002", "PCN1003", "PCN1005"]


def test_exported_claims_are_not_sent_again_and_the_control_number_moves_on(tenant_a, claims):
    first = export_ready_claims(tenant_a, now=NOW)
    Claim.objects.filter(patient_control_number="PCN1003").update(status=ClaimStatus.DRAFT)

    again = export_ready_claims(tenant_a, now=NOW)

    assert len(first.claim_ids) == 2
    assert (again.text, again.claim_ids, again.problems, again.ready) == ("", [], [], 0)
    assert AuditEvent.objects.filter(tenant=tenant_a, action="export").count() == 1
    assert next_control_number(tenant_a) == 3  # after the last export (1) and the 2 claims submitted so far


def test_a_tenant_without_a_billing_profile_is_told_what_to_set(tenant_a, records):
    ready_claim(tenant_a, records["patients"]["p2"], "PCN2001", [("99213", "100")], encounters=[records["encounters"]["e2"]])

    with pytest.raises(BillingProfileError, match=r"tenant 'tenant-a' has no billing profile: add one in the admin"):
        export_ready_claims(tenant_a)

    assert Claim.objects.get().status == ClaimStatus.READY
    assert not AuditEvent.objects.filter(action="export").exists()


def test_an_incomplete_billing_profile_names_what_is_wrong(tenant_a, records):
    BillingProfile.objects.filter(pk=billing_profile(tenant_a).pk).update(postal_code="37203", phone="")

    with pytest.raises(BillingProfileError, match=r"incomplete: set phone; the postal code must be the 9 digits of the ZIP\+4"):
        export_ready_claims(tenant_a)


def test_the_command_writes_the_file_and_reports(tenant_a, claims, tmp_path):
    out_file = tmp_path / "claims.837"
    stdout, stderr = io.StringIO(), io.StringIO()

    call_command("export_claims", tenant=tenant_a.slug, out=str(out_file), control_number=77, stdout=stdout, stderr=stderr)

    text = out_file.read_text()
    assert pyx12_errors(text) == []
    assert [row[1] for row in elements(text, "CLM")] == ["PCN1001", "PCN1002"]
    assert elements(text, "GS")[0][6] == "77"
    assert "Exported 2 claim(s)" in stdout.getvalue() and "control number 77" in stdout.getvalue()
    assert "skipped claim PCN1003: no diagnoses" in stderr.getvalue()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.837"]

    with pytest.raises(CommandError, match=r"None of the 1 ready claim\(s\) could be exported \(see above\); nothing was written"):
        call_command("export_claims", tenant=tenant_a.slug, out=str(tmp_path / "again.837"), stdout=io.StringIO(), stderr=io.StringIO())
    Claim.objects.filter(patient_control_number="PCN1003").update(status=ClaimStatus.DRAFT)
    with pytest.raises(CommandError, match="No ready 837P claims for tenant 'tenant-a': nothing was exported"):
        call_command("export_claims", tenant=tenant_a.slug, out=str(tmp_path / "again.837"), stdout=io.StringIO(), stderr=io.StringIO())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["claims.837"]


def test_the_command_fails_without_a_billing_profile(tenant_a, records, tmp_path):
    with pytest.raises(CommandError, match="has no billing profile"):
        call_command("export_claims", tenant=tenant_a.slug, out=str(tmp_path / "claims.837"), stdout=io.StringIO())
    assert list(tmp_path.iterdir()) == []


def test_claims_another_export_submitted_meanwhile_are_never_sent_twice(tenant_a, claims, monkeypatch):
    # given another export that marks PCN1001 submitted while this one builds its file
    write = claims_export.write_837p

    def write_while_another_export_submits(claim_list, **options):
        if len(claim_list) > 1:  # the whole file, after each claim was checked alone
            Claim.objects.filter(patient_control_number="PCN1001").update(status=ClaimStatus.SUBMITTED)
        return write(claim_list, **options)

    monkeypatch.setattr(claims_export, "write_837p", write_while_another_export_submits)

    # when / then: nothing is marked by this export, and nothing is audited
    with pytest.raises(claims_export.ExportConflict, match="1 of 2 claims were submitted by another export meanwhile"):
        export_ready_claims(tenant_a, now=NOW)
    assert Claim.objects.get(patient_control_number="PCN1002").status == ClaimStatus.READY
    assert not AuditEvent.objects.filter(action="export").exists()


# --- 837I ---------------------------------------------------------------------------------------


@pytest.fixture
def attending(tenant_a):
    upsert_records("practitioner", [{"external_id": "dr1", "family_name": "Welby", "given_names": ["Marcus"],
                                     "npi": npi("234567890")}], tenant=tenant_a, connection=ConnectionFactory(tenant=tenant_a))
    return Practitioner.objects.get(tenant=tenant_a, external_id="dr1")


def institutional_claim(tenant, records, attending, pcn="HH2001", **fields):
    values = {"kind": "I", "facility_type_code": "32", "statement_from": date(2025, 3, 1), "statement_to": date(2025, 3, 31),
              "admission_date": date(2025, 3, 1), "admission_type_code": "3", "admission_source_code": "1",
              "patient_status_code": "30", "attending_practitioner": attending, "claim_filing_indicator": "MA",
              "place_of_service": "", **fields}
    return ready_claim(tenant, records["patients"]["p1"], pcn, [
        ("G0299", "150.00", {"revenue": "0551", "units": 2}),
        ("G0151", "120.00", {"revenue": "0421"}),
    ], encounters=[records["encounters"]["e1"]], **values)


def test_institutional_claims_are_written_as_an_837i_that_passes_pyx12(tenant_a, records, attending):
    billing_profile(tenant_a)
    institutional_claim(tenant_a, records, attending)
    ready_claim(tenant_a, records["patients"]["p2"], "PCN3001", [("99213", "100")], encounters=[records["encounters"]["e2"]])

    result = export_ready_claims(tenant_a, kind="I", now=NOW)

    assert pyx12_errors(result.text) == []
    assert elements(result.text, "GS")[0][8] == "005010X223A2"
    assert elements(result.text, "CLM") == [["CLM", "HH2001", "270", "", "", "32:A:1", "", "A", "Y", "Y"]]
    assert elements(result.text, "CL1") == [["CL1", "3", "1", "30"]]
    assert ["DTP", "434", "RD8", "20250301-20250331"] in elements(result.text, "DTP")
    assert elements(result.text, "SV2") == [["SV2", "0551", "HC:G0299", "150", "UN", "2"], ["SV2", "0421", "HC:G0151", "120", "UN", "1"]]
    assert ["NM1", "71", "1", "Welby", "Marcus", "", "", "", "XX", npi("234567890")] in elements(result.text, "NM1")
    assert elements(result.text, "SBR")[0][9] == "MA"
    assert result.other_kind_ready == 1  # the professional claim waits for its own export
    assert Claim.objects.get(patient_control_number="HH2001").status == ClaimStatus.SUBMITTED
    assert ClaimBatch.objects.get().kind == "I"


@pytest.mark.parametrize(("fields", "reason"), [
    ({"facility_type_code": ""}, "no facility type code (CLM05-1"),
    ({"statement_to": None}, "no statement dates (DTP*434)"),
    ({"statement_to": date(2025, 2, 1)}, "the statement period ends (2025-02-01) before it starts (2025-03-01)"),
    ({"patient_status_code": ""}, "no patient status code (CL103"),
    ({"attending_practitioner": None}, "no attending practitioner (2310A)"),
])
def test_an_institutional_claim_missing_what_the_837i_needs_is_skipped_with_the_reason(tenant_a, records, attending, fields, reason):
    billing_profile(tenant_a)
    institutional_claim(tenant_a, records, attending, **fields)

    result = export_ready_claims(tenant_a, kind="I", now=NOW)

    assert result.text == ""
    assert len(result.problems) == 1 and result.problems[0].startswith(f"claim HH2001: {reason}")
    assert Claim.objects.get().status == ClaimStatus.READY


def test_an_institutional_line_without_a_revenue_code_is_named(tenant_a, records, attending):
    billing_profile(tenant_a)
    claim = institutional_claim(tenant_a, records, attending)
    claim.lines.filter(position=2).update(revenue_code="")

    result = export_ready_claims(tenant_a, kind="I", now=NOW)

    assert result.problems == ["claim HH2001: line 2 has no revenue code, which every institutional line needs (SV201)"]


def test_the_command_exports_837i_with_kind_i(tenant_a, records, attending, tmp_path):
    billing_profile(tenant_a)
    institutional_claim(tenant_a, records, attending)
    out_file, stdout = tmp_path / "claims.837i", io.StringIO()

    call_command("export_claims", tenant=tenant_a.slug, out=str(out_file), kind="I", stdout=stdout, stderr=io.StringIO())

    assert pyx12_errors(out_file.read_text()) == []
    assert "as an 837I" in stdout.getvalue()
