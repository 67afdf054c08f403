"""Claims drafted from finished encounters: priced by the fee schedule, primary coverage, the
encounter linked; drafting again finds the same claim; unbillable encounters say why."""

from __future__ import annotations

from decimal import Decimal

import pytest

from canonical.models import Encounter
from canonical.upsert import upsert_records
from reconciliation.claims_from_encounters import claims_from_encounters
from reconciliation.models import Claim, FeeScheduleEntry
from tests.factories import ConnectionFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def encounters(tenant_a):
    connection = ConnectionFactory(tenant=tenant_a)
    upsert_records("patient", [{"external_id": "p1", "family_name": "Doe"}, {"external_id": "p2", "family_name": "Roe"}],
                   tenant=tenant_a, connection=connection)
    upsert_records("coverage", [{"external_id": "c1", "patient": "p1", "payer": "ACME HEALTH", "payer_id": "ACME01",
                                 "member_id": "W1", "priority": 1, "status": "active"}], tenant=tenant_a, connection=connection)
    visit = {"period_start": "2025-03-03T23:30:00-06:00", "diagnoses": [{"code": "F41.1"}]}
    upsert_records("encounter", [
        {"external_id": "e1", "patient": "p1", **visit, "procedures": [
            {"system": "http://www.ama-assn.org/go/cpt", "code": "90834", "modifiers": ["95"]},
            {"system": "http://www.ama-assn.org/go/cpt", "code": "96127", "units": 2}]},
        {"external_id": "e2", "patient": "p2", **visit, "procedures": [{"system": "cpt", "code": "90834"}]},
        {"external_id": "e3", "patient": "p1", **visit, "procedures": []},
        {"external_id": "e4", "patient": "p1", **visit, "procedures": [{"system": "cpt", "code": "99999"}]},
    ], tenant=tenant_a, connection=connection)
    FeeScheduleEntry.objects.create(tenant=tenant_a, procedure_code="90834", charge=Decimal("140.00"))
    FeeScheduleEntry.objects.create(tenant=tenant_a, procedure_code="96127", charge=Decimal("12.50"))
    return {e.external_id: e for e in Encounter.objects.filter(tenant=tenant_a)}


def test_a_finished_encounter_becomes_a_ready_claim_priced_by_the_fee_schedule(tenant_a, encounters):
    result = claims_from_encounters(tenant_a, [encounters["e1"]])

    [claim] = result.claims
    assert (claim.status, claim.payer_name, claim.payer_id, claim.total_charge) == ("ready", "ACME HEALTH", "ACME01", Decimal("165.00"))
    assert [(line.procedure_code, line.modifiers, line.units, line.charge, str(line.service_date)) for line in claim.lines.all()] == [
        ("90834", ["95"], Decimal("1.00"), Decimal("140.00"), "2025-03-03"),  # the tenant's day, not UTC's
        ("96127", [], Decimal("2.00"), Decimal("25.00"), "2025-03-03"),
    ]
    assert list(claim.encounters.all()) == [encounters["e1"]]
    assert claims_from_encounters(tenant_a, [encounters["e1"]]).claims == [claim]
    assert Claim.objects.count() == 1


def test_unbillable_encounters_are_reported_with_the_reason(tenant_a, encounters):
    result = claims_from_encounters(tenant_a, [encounters["e2"], encounters["e3"], encounters["e4"]])

    assert result.claims == []
    assert [problem.split(": ", 1)[1] for problem in result.problems] == [
        "the patient has no active primary coverage", "no procedures to bill", "procedure 99999 has no fee in the fee schedule"]


def test_another_tenants_encounter_is_refused(tenant_b, encounters):
    with pytest.raises(ValueError, match="belongs to another tenant"):
        claims_from_encounters(tenant_b, [encounters["e1"]])
