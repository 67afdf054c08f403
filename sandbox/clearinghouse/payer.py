"""The test payer behind the simulated clearinghouse: a roster of members, claim adjudication, ERAs.

Adjudication is deterministic from (seed, CLM01), so a test knows what a claim will get:
- 60 in 100 claims are paid in full of the allowed amount (55–90% of the charge, per line), the
  rest of the charge written off as CO-45 (charge exceeds the fee schedule);
- 25 in 100 are partially paid: on top of CO-45 the patient owes a deductible (PR-1), coinsurance
  (PR-2, 20%) or a copay (PR-3);
- 15 in 100 are denied (CLP02 4): CO-197 (no prior authorization, RARC M62) when the claim carries
  none, else CO-50 (not medically necessary, RARC N130);
- a member the roster does not know gets CO-31 (RARC N382); an inactive member, or a date of service
  outside the coverage, CO-27 or CO-26 (RARC N30);
- the same original claim (frequency 1) sent again while its payment stands is denied CO-18 (exact
  duplicate);
- a replacement (CLM05-3 7) or void (8) reverses the earlier payment (CLP02 22, every amount
  negated, the original payer claim control number); a replacement is then paid again as corrected
  (never denied: the correction fixed what was wrong). When the earlier payment is unknown to this
  payer (sent before the sandbox started), it is rebuilt as the payer would have decided it.

One 835 transaction set goes out per payer and billing provider of a batch; a negative net (more
reversed than paid) is carried forward with a PLB FB adjustment and recouped from the next payment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date
from decimal import ROUND_HALF_UP, Decimal

from formats.x12.claim837_reader import INSTITUTIONAL, SubmittedClaim, SubmittedLine
from formats.x12.era835 import Adjustment, Entity, Procedure, ProviderAdjustment
from formats.x12.era835_writer import (
    ClaimPayment,
    LinePayment,
    RemittanceAdvice,
    RemittancePayee,
    RemittancePayer,
    remittance_filing_indicator,
)
from formats.x12.model import Address

CENT = Decimal("0.01")
ZERO = Decimal("0.00")
PAID_IN_FULL_SHARE = 60  # of 100 claims
PARTIALLY_PAID_SHARE = 25
ALLOWED_PERCENT_RANGE = (55, 90)  # allowed amount as a share of the line charge, inclusive
COINSURANCE = Decimal("0.20")
DEFAULT_COPAY = Decimal("25.00")
DEFAULT_DEDUCTIBLE = Decimal("500.00")
DEFAULT_PLAN = "SANDBOX PPO"
ACH_SHARE = 7  # of 10 payers pay by EFT, the rest by check
DEFAULT_PAYER_ADDRESS = Address("PO BOX 1000", "NASHVILLE", "TN", "372021000")
PAYER_PHONE = "8005550199"

# Claim status codes (CLP02) by the payer's responsibility sequence (SBR01).
PROCESSED_AS = {"P": "1", "S": "2", "T": "3"}
DENIED = "4"
REVERSAL = "22"


@dataclass(frozen=True)
class Member:
    """A member of a payer's plan, as the test payer's roster knows them."""

    payer_id: str
    member_id: str
    first_name: str
    last_name: str
    birth_date: date
    plan_name: str
    active: bool
    copay: Decimal | None = None
    deductible: Decimal | None = None
    coverage_start: date | None = None
    coverage_end: date | None = None

    def covers(self, day: date) -> bool:
        """Active, and `day` inside the coverage dates (open-ended when absent)."""
        if not self.active:
            return False
        return (self.coverage_start is None or self.coverage_start <= day) and (self.coverage_end is None or day <= self.coverage_end)


Roster = Callable[[str, str], Member | None]  # (payer_id, member_id) -> the member, or None when unknown


def roster_of(members: Iterable[Member]) -> Roster:
    """A roster answering from a fixed list of members."""
    table = {(member.payer_id, member.member_id): member for member in members}
    return lambda payer_id, member_id: table.get((payer_id, member_id))


def open_member(payer_id: str, member_id: str, *, first_name: str, last_name: str, birth_date: date | None) -> Member:
    """The member a payer without a roster assumes: everyone is covered on the default plan."""
    return Member(payer_id, member_id, first_name, last_name, birth_date or date(1970, 1, 1), DEFAULT_PLAN, True,
                  copay=DEFAULT_COPAY, deductible=DEFAULT_DEDUCTIBLE)


def digest(*parts: object) -> int:
    """A stable number from `parts` (the same on every run and platform, unlike hash())."""
    return int.from_bytes(hashlib.sha256(":".join(str(part) for part in parts).encode()).digest()[:8], "big")


def _cents(value: Decimal) -> Decimal:
    return value.quantize(CENT, rounding=ROUND_HALF_UP)


def routing_number(seed: object) -> str:
    """A 9-digit ABA routing number with a valid check digit (weights 3, 7, 1)."""
    number = digest("routing", seed)
    base = f"{1 + number % 12:02d}{number // 12 % 10**6:06d}"  # the first two digits are a Federal Reserve district, 01–12
    total = sum(int(digit) * weight for digit, weight in zip(base, (3, 7, 1, 3, 7, 1, 3, 7), strict=True))
    return base + str((10 - total % 10) % 10)


@dataclass
class _Record:
    """A claim payment the payer made, kept so a replacement or void can reverse it."""

    payer_id: str
    payment: ClaimPayment
    reversed: bool = False


@dataclass(frozen=True)
class _Outcome:
    """How one claim is decided: paid, partial (with the PR reason), or denied (with CARC and RARC)."""

    kind: str  # "paid", "partial", "denied"
    patient_reason: str = ""  # 1 deductible, 2 coinsurance, 3 copay
    denial_reason: str = ""
    remark: str = ""


class SandboxPayer:
    """Adjudicates claims and writes remittances; not thread-safe (the clearinghouse holds a lock)."""

    def __init__(self, *, seed: int, roster: Roster | None) -> None:
        self.seed = seed
        self.roster = roster
        self.records: dict[tuple[str, str], _Record] = {}  # (payer id, payer claim control number) → payment
        self.standing: dict[tuple[str, str], str] = {}  # (payer id, CLM01) → control number of the payment that stands
        self.decisions: dict[tuple[str, str], int] = {}  # (payer id, CLM01) → adjudications so far
        self.owed: dict[tuple[str, str], tuple[Decimal, str]] = {}  # (payer id, payee NPI) → (balance forward, its reference)

    # --- members

    def member(self, payer_id: str, member_id: str, *, first_name: str = "", last_name: str = "",
               birth_date: date | None = None) -> Member | None:
        if self.roster is None:
            return open_member(payer_id, member_id, first_name=first_name, last_name=last_name, birth_date=birth_date)
        return self.roster(payer_id, member_id)

    # --- adjudication

    def outcome(self, patient_control_number: str, *, prior_authorization: bool) -> _Outcome:
        bucket = digest(self.seed, patient_control_number) % 100
        if bucket < PAID_IN_FULL_SHARE:
            return _Outcome("paid")
        if bucket < PAID_IN_FULL_SHARE + PARTIALLY_PAID_SHARE:
            return _Outcome("partial", patient_reason=("1", "2", "3")[bucket % 3])
        if bucket % 2 == 0 and not prior_authorization:
            return _Outcome("denied", denial_reason="197", remark="M62")
        return _Outcome("denied", denial_reason="50", remark="N130")

    def claim_control_number(self, claim: SubmittedClaim, today: date) -> str:
        """The payer's claim control number (ICN): the Julian date and 8 digits unique to this decision."""
        key = (claim.payer_id, claim.patient_control_number)
        count = self.decisions.get(key, 0) + 1
        self.decisions[key] = count
        return f"{today:%y%j}{digest(self.seed, claim.payer_id, claim.patient_control_number, count) % 10**8:08d}"

    def adjudicate(self, claim: SubmittedClaim, *, today: date) -> list[ClaimPayment]:
        """The claim payments (CLP) one submitted claim produces: one, or a reversal and a correction."""
        subscriber = claim.subscriber
        member = self.member(claim.payer_id, subscriber.member_id, first_name=subscriber.first_name, last_name=subscriber.last_name,
                             birth_date=subscriber.birth_date)
        if claim.is_correction:
            return self._correct(claim, member, today)
        key = (claim.payer_id, claim.patient_control_number)
        if key in self.standing:
            payment = self._denial(claim, today, reason="18", remark="")
        else:
            payment = self._decide(claim, member, today, allow_denial=True)
            self.standing[key] = payment.payer_claim_control_number
        self.records[(claim.payer_id, payment.payer_claim_control_number)] = _Record(claim.payer_id, payment)
        return [payment]

    def _correct(self, claim: SubmittedClaim, member: Member | None, today: date) -> list[ClaimPayment]:
        key = (claim.payer_id, claim.patient_control_number)
        original = self.records.get((claim.payer_id, claim.payer_claim_control_number))
        if original is None and key in self.standing:
            original = self.records.get((claim.payer_id, self.standing[key]))
        if original is None:
            # Paid before this payer's memory began: rebuild the earlier payment as it was decided.
            earlier = replace(claim, frequency_code="1")
            payment = self._decide(earlier, member, today, allow_denial=True)
            payment = replace(payment, payer_claim_control_number=claim.payer_claim_control_number or payment.payer_claim_control_number)
            original = _Record(claim.payer_id, payment)
            self.records[(claim.payer_id, payment.payer_claim_control_number)] = original
        if original.reversed:
            # Nothing stands to reverse: the earlier payment was already taken back.
            return [self._denial(claim, today, reason="129", remark="")]
        original.reversed = True
        if self.standing.get(key) == original.payment.payer_claim_control_number:
            del self.standing[key]
        payments = [reversal(original.payment, today)]
        if claim.frequency_code == "7":
            corrected = self._decide(claim, member, today, allow_denial=False)
            corrected = replace(corrected, original_reference=original.payment.payer_claim_control_number)
            self.records[(claim.payer_id, corrected.payer_claim_control_number)] = _Record(claim.payer_id, corrected)
            self.standing[key] = corrected.payer_claim_control_number
            payments.append(corrected)
        return payments

    def _decide(self, claim: SubmittedClaim, member: Member | None, today: date, *, allow_denial: bool) -> ClaimPayment:
        if member is None:
            return self._denial(claim, today, reason="31", remark="N382")
        day = claim.first_service_date or today
        if not member.covers(day):
            before = member.active and member.coverage_start is not None and day < member.coverage_start
            return self._denial(claim, today, reason="26" if before else "27", remark="N30")
        outcome = self.outcome(claim.patient_control_number, prior_authorization=bool(claim.prior_authorization))
        if outcome.kind == "denied" and allow_denial:
            return self._denial(claim, today, reason=outcome.denial_reason, remark=outcome.remark)
        patient_reason = outcome.patient_reason if outcome.kind == "partial" else ""
        deductible_left = member.deductible if member.deductible is not None else DEFAULT_DEDUCTIBLE
        copay = member.copay if member.copay is not None else DEFAULT_COPAY
        lines = []
        for line in claim.lines:
            # Keyed by the frequency too: a replacement is priced afresh, so its payment differs from the one it replaces.
            percent = ALLOWED_PERCENT_RANGE[0] + digest(self.seed, claim.patient_control_number, claim.frequency_code, line.number) % (
                ALLOWED_PERCENT_RANGE[1] - ALLOWED_PERCENT_RANGE[0] + 1)
            allowed = _cents(line.charge * percent / 100)
            adjustments = []
            if line.charge - allowed:
                adjustments.append(Adjustment(group="CO", reason="45", amount=line.charge - allowed))
            patient = ZERO
            if patient_reason == "1":
                patient = min(allowed, deductible_left)
                deductible_left -= patient
            elif patient_reason == "2":
                patient = _cents(allowed * COINSURANCE)
            elif patient_reason == "3" and line is claim.lines[0]:
                patient = min(allowed, copay)
            if patient:
                adjustments.append(Adjustment(group="PR", reason=patient_reason, amount=patient))
            lines.append(self._line(claim, line, paid=allowed - patient, adjustments=adjustments, allowed=allowed))
        return self._payment(claim, today, status=PROCESSED_AS.get(claim.payer_responsibility, "1"), lines=lines)

    def _denial(self, claim: SubmittedClaim, today: date, *, reason: str, remark: str) -> ClaimPayment:
        lines = [
            self._line(claim, line, paid=ZERO, adjustments=[Adjustment(group="CO", reason=reason, amount=line.charge)],
                       remarks=(remark,) if remark else ())
            for line in claim.lines
        ]
        # MA01: appeal rights, which every denial states.
        return self._payment(claim, today, status=DENIED, lines=lines, remarks=("MA01",))

    def _line(self, claim: SubmittedClaim, line: SubmittedLine, *, paid: Decimal, adjustments: list[Adjustment],
              allowed: Decimal | None = None, remarks: tuple[str, ...] = ()) -> LinePayment:
        if line.procedure_code:
            procedure = Procedure(qualifier=line.procedure_qualifier, code=line.procedure_code, modifiers=list(line.modifiers))
            revenue_code = line.revenue_code
        else:  # an institutional line billed by revenue code alone
            procedure = Procedure(qualifier="NU", code=line.revenue_code)
            revenue_code = ""
        return LinePayment(
            procedure=procedure, charge=line.charge, paid=paid, revenue_code=revenue_code, units=line.units,
            service_date=line.service_date, service_date_to=line.service_date_to, adjustments=tuple(adjustments),
            control_number=line.control_number, allowed_amount=allowed, remark_codes=remarks,
        )

    def _payment(self, claim: SubmittedClaim, today: date, *, status: str, lines: list[LinePayment],
                 remarks: tuple[str, ...] = ()) -> ClaimPayment:
        subscriber, patient = claim.subscriber, claim.patient
        insured = Entity(entity_code="IL", entity_type="1", last_name=subscriber.last_name, first_name=subscriber.first_name,
                         middle_name=subscriber.middle_name, id_qualifier="MI", id=subscriber.member_id)
        named = patient or subscriber
        patient_entity = Entity(entity_code="QC", entity_type="1", last_name=named.last_name, first_name=named.first_name,
                                middle_name=named.middle_name, id_qualifier="MI", id=subscriber.member_id)
        if claim.claim_type == INSTITUTIONAL:
            start, end = claim.statement_from, claim.statement_to
        else:
            start, end = claim.first_service_date, claim.last_service_date
        return ClaimPayment(
            patient_control_number=claim.patient_control_number,
            status=status,
            charge=claim.total_charge,
            paid=sum((line.paid for line in lines), ZERO),
            patient=patient_entity,
            insured=insured if patient is not None else None,
            filing_indicator=remittance_filing_indicator(claim.claim_filing_indicator),
            payer_claim_control_number=self.claim_control_number(claim, today),
            facility_type=claim.facility_code,
            frequency=claim.frequency_code,
            remark_codes=remarks,
            statement_from=start,
            statement_to=end,
            received_date=today,
            lines=tuple(lines),
        )

    # --- remittances

    def remit(self, claims: list[SubmittedClaim], *, today: date, next_trace: Callable[[str], str]) -> list[RemittanceAdvice]:
        """One remittance per payer and billing provider, in the order they first appear.

        `next_trace(method)` gives a fresh trace number for a payment by "ACH" or "CHK".
        """
        grouped: dict[tuple[str, str], list[SubmittedClaim]] = {}
        for claim in claims:
            grouped.setdefault((claim.payer_id, claim.billing_provider_npi), []).append(claim)
        remittances = []
        for (payer_id, npi), members in grouped.items():
            first = members[0]
            payments = [payment for claim in members for payment in self.adjudicate(claim, today=today)]
            method = "ACH" if digest(self.seed, "method", payer_id) % 10 < ACH_SHARE else "CHK"
            trace = next_trace(method)
            adjustments = self._balance_forward(payer_id, npi, payments, trace, today)
            payer = RemittancePayer(
                name=first.payer_name, payer_id=payer_id, address=first.payer_address or DEFAULT_PAYER_ADDRESS,
                company_id=f"1{digest(self.seed, 'ein', payer_id) % 10**9:09d}", contact_name="EDI SUPPORT", contact_phone=PAYER_PHONE,
            )
            payee = RemittancePayee(name=first.billing_provider_name, npi=npi, tax_id=first.billing_provider_tax_id)
            net = sum((payment.paid for payment in payments), ZERO) - sum((a.amount for a in adjustments), ZERO)
            remittances.append(RemittanceAdvice(
                payer=payer, payee=payee, payment_method=method if net else "NON", trace_number=trace, payment_date=today,
                claims=tuple(payments), provider_adjustments=tuple(adjustments), production_date=today, receiver_id=first.submitter_id,
                payer_routing_number=routing_number((self.seed, payer_id)), payer_account_number=f"{digest(self.seed, 'account', payer_id) % 10**10:010d}",
                payee_routing_number=routing_number((self.seed, npi)), payee_account_number=f"{digest(self.seed, 'account', npi) % 10**10:010d}",
            ))
        return remittances

    def _balance_forward(self, payer_id: str, npi: str, payments: list[ClaimPayment], trace: str, today: date) -> list[ProviderAdjustment]:
        """PLB FB: recoup what the provider owes from this payment, or carry a negative net forward."""
        net = sum((payment.paid for payment in payments), ZERO)
        owed, reference = self.owed.get((payer_id, npi), (ZERO, ""))
        fiscal_period = date(today.year, 12, 31)
        adjustments = []
        if owed > 0 and net > 0:
            recouped = min(owed, net)
            adjustments.append(ProviderAdjustment(provider_id=npi, fiscal_period_date=fiscal_period, reason="FB", reference=reference,
                                                  amount=recouped))
            owed -= recouped
            net -= recouped
        if net < 0:
            reference = trace
            adjustments.append(ProviderAdjustment(provider_id=npi, fiscal_period_date=fiscal_period, reason="FB", reference=reference,
                                                  amount=net))
            owed -= net
        self.owed[(payer_id, npi)] = (owed, reference)
        return adjustments


def reversal(payment: ClaimPayment, today: date) -> ClaimPayment:
    """The reversal (CLP02 22) of `payment`: every amount negated, the same payer claim control number."""

    def negated(adjustments) -> tuple[Adjustment, ...]:
        return tuple(Adjustment(group=a.group, reason=a.reason, amount=-a.amount, quantity=a.quantity) for a in adjustments)

    lines = tuple(
        replace(line, charge=-line.charge, paid=-line.paid, adjustments=negated(line.adjustments),
                allowed_amount=None if line.allowed_amount is None else -line.allowed_amount, remark_codes=())
        for line in payment.lines
    )
    return replace(
        payment, status=REVERSAL, charge=-payment.charge, paid=-payment.paid,
        patient_responsibility=None if payment.patient_responsibility is None else -payment.patient_responsibility,
        adjustments=negated(payment.adjustments), remark_codes=(), original_reference="", received_date=today, lines=lines,
    )
