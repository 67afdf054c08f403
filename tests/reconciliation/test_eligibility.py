"""Reading a 271 into an eligibility check: active with plan, dates, copay, coinsurance and
deductibles (in-network preferred); inactive; a member the payer cannot find; a 271 that does not
read is kept with the segment named."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from canonical.models import Patient
from canonical.upsert import upsert_records
from reconciliation.eligibility import apply_271, read_271
from reconciliation.models import EligibilityCheck
from tests.factories import ConnectionFactory

FIXTURE = (Path(__file__).parent.parent / "fixtures" / "x12" / "eligibility_271_coverage.txt").read_text()


def test_an_active_member_with_plan_dates_and_amounts():
    answer = read_271(FIXTURE, trace_number="TRACE0001")

    assert answer.status == "active"
    assert answer.plan_name == "GOLD PPO PLAN"
    assert (answer.coverage_start, answer.coverage_end) == (date(2024, 1, 1), date(2024, 12, 31))
    assert answer.copay == Decimal("25.00")
    assert answer.coinsurance_percent == Decimal("20.00")
    assert (answer.deductible, answer.deductible_remaining) == (Decimal("1500.00"), Decimal("350.55"))


def test_a_member_the_payer_cannot_identify_is_not_found_with_the_reason():
    answer = read_271(FIXTURE, trace_number="TRACE0002")

    assert answer.status == "not_found"
    assert answer.reason.startswith("AAA 72: Invalid/Missing Subscriber/Insured ID")


def test_an_inactive_member():
    inactive = FIXTURE.replace("EB*1*FAM*30^1^33*PR*GOLD PPO PLAN~", "EB*6*FAM*30*PR*GOLD PPO PLAN~")

    answer = read_271(inactive, trace_number="TRACE0001")

    assert (answer.status, answer.plan_name) == ("inactive", "GOLD PPO PLAN")


@pytest.mark.django_db
def test_a_271_that_does_not_read_marks_the_check_failed_and_keeps_the_text(tenant_a):
    upsert_records("patient", [{"external_id": "p1", "family_name": "Doe"}], tenant=tenant_a, connection=ConnectionFactory(tenant=tenant_a))
    check = EligibilityCheck.objects.create(tenant=tenant_a, patient=Patient.objects.get(), service_date=date(2024, 3, 5),
                                            trace_number="TRACE0001")
    broken = FIXTURE.replace("SE*40*0001~", "SE*41*0001~")

    apply_271(check, broken)

    check.refresh_from_db()
    assert check.status == "error"
    assert "the 271 does not read" in check.reason and "SE" in check.reason
    assert check.response_x12 == broken and check.answered_at is not None

    apply_271(check, FIXTURE)
    check.refresh_from_db()
    assert (check.status, check.copay, check.reason) == ("active", Decimal("25.00"), "")
