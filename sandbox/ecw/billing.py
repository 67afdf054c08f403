"""The RCM module's clearinghouse path: eligibility (270 out, 271 back) and claim files (837 in, 999 back).

The practice files through one clearinghouse (sandbox.clearinghouse), which answers eligibility at
once and acknowledges a claim file with a 999; the payer's 835 follows later, fetched from a signed
link the clearinghouse hands out once it is ready.
"""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Any

from formats.x12.eligibility import EligibilityResponse, parse_271, write_270
from formats.x12.model import Party, Payer, Receiver, Submitter, Subscriber
from sandbox.clearinghouse.vendor import CLEARINGHOUSE_ID
from sandbox.ecw.data import PRACTICE_NAME, PRACTICE_NPI, PRACTICE_PHONE, PRACTICE_TAX_ID
from sandbox.ecw.errors import refuse
from sandbox.server import HttpError

SUBMITTER_ID = "RIVERBEND01"  # the practice's submitter id at the clearinghouse (ISA06, NM109 of 1000A)
SUBMITTER = Submitter(name=PRACTICE_NAME, identifier=SUBMITTER_ID, contact_name="Billing Office", contact_phone=PRACTICE_PHONE)
RECEIVER = Receiver(name="Sandbox Clearinghouse", identifier=CLEARINGHOUSE_ID)  # ISA08 of the 270s
BILLING_PROVIDER = Party(organization_name=PRACTICE_NAME, npi=PRACTICE_NPI, tax_id=PRACTICE_TAX_ID)
NOT_FOUND_REASONS = frozenset({"67", "72", "73", "75", "76", "77", "78"})  # AAA03: the payer could not find the member
ERA_LINK_TTL_S = 300


def clearinghouse_of(vendor):
    if vendor.clearinghouse is None:
        raise refuse(503, "this practice has no clearinghouse connection")
    return vendor.clearinghouse


def check_eligibility(vendor, patient: int, service_date: date, service_type: str) -> dict[str, Any]:
    """Ask the patient's primary payer about `service_date`; the 270, the 271 and what it says."""
    record = vendor.practice.record("patients", patient)
    coverage = (record or {}).get("coverage") or []
    if record is None or not coverage:
        raise refuse(501, f"patient {record['id'] if record else patient} has no insurance on file (self-pay)",
                     patient_id=record["id"] if record else None)
    plan = coverage[0]
    clearinghouse = clearinghouse_of(vendor)
    control = vendor.next_control_number()
    trace = f"RB{control:09d}"
    try:
        born = date.fromisoformat(record["date_of_birth"])
        subscriber = Subscriber(member_id=plan["member_id"], last_name=record["last_name"], first_name=record["first_name"],
                                middle_name=record.get("middle_name") or "", birth_date=born, sex=record.get("sex") or "U",
                                group_number=plan.get("group_number") or "", claim_filing_indicator=plan.get("claim_filing_indicator") or "CI")
        inquiry = write_270(subscriber=subscriber, payer=Payer(name=plan["payer_name"], payer_id=plan["payer_id"]), provider=BILLING_PROVIDER,
                            service_date=service_date, trace_number=trace, submitter=SUBMITTER, receiver=RECEIVER, control_number=control,
                            service_types=(service_type,))
    except (KeyError, TypeError, ValueError) as exc:  # a chart the 270 cannot carry (a delimiter in a name, a broken date)
        raise refuse(502, f"the patient's coverage cannot be sent as a 270: {exc}", patient_id=record["id"]) from None
    try:
        response = clearinghouse.eligibility(inquiry)
    except HttpError as exc:  # the clearinghouse could not read our 270
        raise refuse(502, f"the clearinghouse refused the 270: {exc.detail}", x12_270=inquiry) from None
    try:
        parsed = parse_271(response)
    except ValueError as exc:
        raise refuse(503, f"the clearinghouse's answer could not be read: {exc}", x12_270=inquiry, x12_271=response) from None
    return {"patient_id": record["id"], "payer_id": plan["payer_id"], "payer_name": plan["payer_name"], "member_id": plan["member_id"],
            "date": service_date.isoformat(), "service_type": service_type, "trace_number": trace, "x12_270": inquiry,
            "x12_271": response, "summary": summarize(parsed, trace)}


def summarize(response: EligibilityResponse, trace: str) -> dict[str, Any]:
    """What the front desk reads off a 271: status (active | inactive | not_found | rejected | unknown), plan, dates, amounts."""
    member = response.members[0] if response.members else None
    rejections = list(response.rejections)
    if member is not None:
        rejections += member.rejections + [r for benefit in member.benefits for r in benefit.rejections]
    if rejections:
        status = "not_found" if any(r.reason_code in NOT_FOUND_REASONS for r in rejections) else "rejected"
    elif member is not None and member.is_active:
        status = "active"
    elif member is not None and member.inactive_benefits:
        status = "inactive"
    else:
        status = "unknown"
    summary: dict[str, Any] = {"status": status, "active": status == "active", "plan_name": None, "coverage_start": None,
                               "coverage_end": None, "copay": None, "deductible": None,
                               "trace_matched": member is not None and trace in member.trace_numbers,
                               "rejections": [{"loop": r.loop, "code": r.reason_code, "reason": r.reason, "follow_up": r.follow_up_action}
                                              for r in rejections]}
    if member is None:
        return summary
    status_benefits = member.active_benefits or member.inactive_benefits
    summary["plan_name"] = next((b.plan_name for b in status_benefits if b.plan_name), None)
    dates = dict(member.dates)
    for benefit in status_benefits:
        for qualifier, value in benefit.dates.items():
            dates.setdefault(qualifier, value)
    if "346" in dates:
        summary["coverage_start"] = dates["346"].start.isoformat()
    if "347" in dates:
        summary["coverage_end"] = dates["347"].end.isoformat()
    if "291" in dates and summary["coverage_start"] is None:
        summary["coverage_start"] = dates["291"].start.isoformat()
        summary["coverage_end"] = summary["coverage_end"] or (dates["291"].end.isoformat() if dates["291"].end != dates["291"].start else None)
    copay = next((b.amount for b in member.copays if b.amount is not None), None)
    deductible = next((b.amount for b in member.deductibles if b.amount is not None), None)
    summary["copay"] = str(copay) if copay is not None else None
    summary["deductible"] = str(deductible) if deductible is not None else None
    return summary


def submit_claim_file(vendor, account, text: str) -> dict[str, Any]:
    """Hand an 837 to the clearinghouse; the batch id and the 999 verdict."""
    from sandbox.ecw.vendor import ClaimBatch

    clearinghouse = clearinghouse_of(vendor)
    # The clearinghouse never raises for what a file holds: an unreadable one comes back rejected, with its 999.
    submission = clearinghouse.submit(text, submitter=SUBMITTER_ID)
    batch = ClaimBatch(batch_id=submission.batch_id, accepted=submission.accepted, claims=submission.claims, ack_999=submission.ack_999,
                       errors=list(submission.errors), submitted_by=account.username,
                       submitted_at=datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"))
    with vendor.lock:
        vendor.claims[batch.batch_id] = batch
    return {"batch_id": batch.batch_id, "accepted": batch.accepted, "claims": batch.claims, "ack_999": batch.ack_999, "errors": batch.errors}


def claim_status(vendor, batch_id: str) -> dict[str, Any]:
    """A batch's state: rejected (999), accepted (in adjudication) or remitted (the 835 is ready at era_url)."""
    batch = vendor.claims.get(batch_id)
    if batch is None:
        raise refuse(107, f"no claim batch {batch_id!r} was submitted through this practice", batch_id=batch_id)
    era_url = clearinghouse_of(vendor).era_link(batch.batch_id, ttl_s=ERA_LINK_TTL_S) if batch.accepted else None
    status = "rejected" if not batch.accepted else "remitted" if era_url else "accepted"
    return {"batch_id": batch.batch_id, "status": status, "accepted": batch.accepted, "claims": batch.claims, "errors": batch.errors,
            "era_url": era_url, "submitted_at": batch.submitted_at}
