"""Eligibility checks: what a 271 says about one member, kept as an `EligibilityCheck`.

The connector sends the 270 (its vendor's way: eClinicalWorks through its clearinghouse) and hands
the 271 here. `read_271` turns the answer into the check's fields:
- active (EB01 1–5), inactive (6–8), not found (AAA 75 or 72: the payer has no such member), or
  rejected (any other AAA: the payer could not answer, with its reason);
- the plan name, coverage dates (DTP 346/347 or 291), copay (EB*B), coinsurance (EB*A, a fraction
  in the 271, kept as a percent), deductible (EB*C) and, where the payer says so, what remains of
  it (EB06 = 29 remaining).
Amounts prefer in-network benefits (EB12 = Y) when the payer sends both.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal

from django.utils import timezone

from formats.x12.eligibility import Benefit, MemberEligibility, Rejection, parse_271
from formats.x12.errors import X12Error
from reconciliation.choices import EligibilityStatus
from reconciliation.models import EligibilityCheck

NOT_FOUND_REASONS = frozenset({"72", "75"})  # invalid/missing member id, subscriber not found
REMAINING = "29"  # EB06 time period qualifier: remaining
PLAN_DATES = ("346", "347", "291", "307")  # plan begin, plan end, plan, eligibility


@dataclass
class Answer:
    status: str
    plan_name: str = ""
    coverage_start: date | None = None
    coverage_end: date | None = None
    copay: Decimal | None = None
    coinsurance_percent: Decimal | None = None
    deductible: Decimal | None = None
    deductible_remaining: Decimal | None = None
    reason: str = ""


def read_271(text: str | bytes, *, trace_number: str = "") -> Answer:
    """The answer for the member whose TRN echoes `trace_number` (else the first). Raises X12Error."""
    response = parse_271(text)
    members = response.members
    member = next((m for m in members if trace_number and trace_number in m.trace_numbers), members[0] if members else None)
    if member is None:
        rejection = response.rejections[0] if response.rejections else None
        return Answer(EligibilityStatus.REJECTED, reason=_reason(rejection) if rejection else "the 271 answers no member")
    return _answer(member)


def _answer(member: MemberEligibility) -> Answer:
    rejections = member.rejections + [r for benefit in member.benefits for r in benefit.rejections]
    if rejections and not member.benefits:
        first = rejections[0]
        status = EligibilityStatus.NOT_FOUND if first.reason_code in NOT_FOUND_REASONS else EligibilityStatus.REJECTED
        return Answer(status, reason=_reason(first))
    active = member.active_benefits
    answer = Answer(EligibilityStatus.ACTIVE if active else EligibilityStatus.INACTIVE)
    answer.plan_name = next((b.plan_name for b in active + member.benefits if b.plan_name), "")
    start, end = _plan_dates(member, active)
    answer.coverage_start, answer.coverage_end = start, end
    answer.copay = _amount(member.copays)
    coinsurance = _preferred(member.coinsurance, lambda b: b.percent is not None)
    answer.coinsurance_percent = (coinsurance.percent * 100).quantize(Decimal("0.01")) if coinsurance else None
    answer.deductible = _amount([b for b in member.deductibles if b.time_period != REMAINING])
    answer.deductible_remaining = _amount([b for b in member.deductibles if b.time_period == REMAINING])
    return answer


def _plan_dates(member: MemberEligibility, active: list[Benefit]) -> tuple[date | None, date | None]:
    dates = dict(member.dates)
    for benefit in active:
        dates = {**benefit.dates, **dates}
    start = end = None
    for qualifier in PLAN_DATES:
        found = dates.get(qualifier)
        if found is None:
            continue
        if qualifier == "347":
            end = end or found.start
        elif qualifier == "346":
            start = start or found.start
        else:
            start, end = start or found.start, end or found.end
    return start, end


def _preferred(benefits: list[Benefit], usable) -> Benefit | None:
    usable_ones = [b for b in benefits if usable(b)]
    return next((b for b in usable_ones if b.in_network == "Y"), usable_ones[0] if usable_ones else None)


def _amount(benefits: list[Benefit]) -> Decimal | None:
    benefit = _preferred(benefits, lambda b: b.amount is not None)
    return benefit.amount if benefit else None


def _reason(rejection: Rejection) -> str:
    return f"AAA {rejection.reason_code}: {rejection.reason}" + (
        f" ({rejection.follow_up_action})" if rejection.follow_up_action_code else "")


def apply_271(check: EligibilityCheck, text: str, *, now: datetime | None = None) -> EligibilityCheck:
    """Fill `check` from the 271 `text` and save it. A 271 that does not read marks the check ERROR
    with the segment and element named, keeping the text for replay."""
    check.response_x12 = text
    check.answered_at = now or timezone.now()
    try:
        answer = read_271(text, trace_number=check.trace_number)
    except X12Error as exc:
        check.status, check.reason = EligibilityStatus.ERROR, f"the 271 does not read: {exc}"[:300]
    else:
        for name, value in vars(answer).items():
            setattr(check, name, value)
        check.reason = check.reason[:300]
    check.save()
    return check
