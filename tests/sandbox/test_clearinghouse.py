"""The simulated clearinghouse over HTTP: 837 in, 999 back, 835 later (signed, expiring links), 270/271
eligibility, and the test payer's decisions: paid, partially paid, denied, reversed."""

from __future__ import annotations

import json
import random
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import date
from decimal import Decimal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from formats.x12.ack999 import parse_999
from formats.x12.claim837 import write_837i, write_837p
from formats.x12.eligibility import parse_271, write_270
from formats.x12.era835 import balance_difference, claim_balance_difference, parse_835
from formats.x12.errors import X12Error
from formats.x12.model import Claim, ClaimLine, Payer, Subscriber
from formats.x12.tokenizer import Delimiters
from sandbox.clearinghouse import Clearinghouse, Member, roster_of
from sandbox.clearinghouse.payer import SandboxPayer
from sandbox.server import Sandbox
from tests.formats.x12.test_claim837 import (
    CLINIC,
    COMMERCIAL,
    CREATED_AT,
    JOHN,
    RECEIVER,
    SUBMITTER,
    dependent_correction,
    office_visit,
    outpatient_claim,
)

SEED = 7
ANNA = Subscriber("X000111", "SMITH", "ANNA", date(1990, 1, 1), "F", JOHN.address)
STRANGER = Subscriber("ZZ404", "NOBODY", "NED", date(1985, 5, 5), "M", JOHN.address)
MEMBERS = [
    Member("12345", "W123456789", "JOHN", "DOE", date(1980, 1, 2), "GOLD PPO", True, copay=Decimal("30"), deductible=Decimal("250"),
           coverage_start=date(2020, 1, 1)),
    Member("TNMCD", "M999", "MARY", "ROE", date(1975, 5, 6), "TENNCARE", True),
    Member("12345", "X000111", "ANNA", "SMITH", date(1990, 1, 1), "SILVER HMO", False, coverage_end=date(2023, 12, 31)),
]


def serve(clearinghouse: Clearinghouse) -> Sandbox:
    server = Sandbox([clearinghouse], port=0)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    return server


@pytest.fixture
def clearinghouse() -> Clearinghouse:
    return Clearinghouse(seed=SEED, roster=roster_of(MEMBERS), era_delay_s=60)


@pytest.fixture
def client(clearinghouse) -> Iterator[httpx.Client]:
    server = serve(clearinghouse)
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            yield http
    finally:
        server.stop()


def professional(claims: list[Claim], control_number: int = 42) -> str:
    return write_837p(claims, submitter=SUBMITTER, receiver=RECEIVER, control_number=control_number, created_at=CREATED_AT)


def submit(client: httpx.Client, text: str | bytes, submitter: str = "SUB123") -> httpx.Response:
    return client.post("/clearinghouse/submit", content=text, headers={"X-Submitter": submitter})


def release(client: httpx.Client) -> dict:
    response = client.post("/_sandbox/mutate", json={"vendor": "clearinghouse", "release_eras": True})
    assert response.status_code == 200
    return response.json()


def download(client: httpx.Client, batch_id: str):
    """The batch's 835, parsed, through the era_url of its status."""
    status = client.get(f"/clearinghouse/batches/{batch_id}").json()
    assert status["era"] == "ready"
    response = client.get(status["era_url"])
    assert response.status_code == 200 and response.headers["content-type"] == "application/edi-x12"
    return parse_835(response.text)


def number_decided(payer: SandboxPayer, kind: str, reason: str = "", authorization: bool = False) -> str:
    """A claim number (CLM01) the payer decides as `kind` (paid, partial, denied), with `reason` if given."""
    for number in range(1000):
        pcn = f"{kind[:3].upper()}{number}"
        outcome = payer.outcome(pcn, prior_authorization=authorization)
        if outcome.kind == kind and reason in ("", outcome.patient_reason, outcome.denial_reason):
            return pcn
    raise AssertionError(f"no claim number decided {kind} {reason}")


def claim_for(payer: SandboxPayer, kind: str, *, subscriber: Subscriber = JOHN, reason: str = "", authorization: bool = False,
              patient_control_number: str = "", **changes) -> Claim:
    """John's office visit numbered so that the payer decides it as `kind`, or numbered as given."""
    pcn = patient_control_number or number_decided(payer, kind, reason, authorization)
    return office_visit(patient_control_number=pcn, subscriber=subscriber, payer=COMMERCIAL, rendering_provider=None,
                        referring_provider=None, prior_authorization="AUTH" if authorization else "", **changes)


# --- submission, 999, ERA ------------------------------------------------------------------------------------


def test_an_837p_is_acknowledged_then_its_era_is_released_and_balances(client, clearinghouse):
    # given two claims for John and one for Mary's dependent Tim
    tim = replace(dependent_correction(), patient_control_number="TIM1", frequency_code="1", payer_claim_control_number="")
    claims = [office_visit(), office_visit(patient_control_number="PCN009"), tim]

    # when
    response = submit(client, professional(claims))

    # then the 999 accepts the group
    assert response.status_code == 200 and response.headers["content-type"] == "application/edi-x12"
    batch_id = response.headers["x-batch-id"]
    (ack,) = parse_999(response.text)
    assert (ack.functional_id, ack.group_control_number, ack.group_status, ack.transactions_accepted) == ("HC", "42", "A", 1)
    # and the ERA is not ready until the payer releases it
    status = client.get(f"/clearinghouse/batches/{batch_id}").json()
    assert (status["status"], status["accepted"], status["claims"], status["era"], status["era_ready"], status["era_url"]) == (
        "accepted", True, 3, "pending", False, None)
    assert clearinghouse.era_link(batch_id) is None
    assert client.get("/_sandbox/state").json() == {"clearinghouse": {"batches": 1, "claims": 3, "eras": 0}}

    assert release(client) == {"released": 1}
    remittances = download(client, batch_id)

    # then one 835 per payer, each balanced: BPR02 = Σ CLP04 − Σ PLB
    assert [r.payer.id for r in remittances] == ["12345", "TNMCD"]
    for remittance in remittances:
        assert balance_difference(remittance) == 0
        assert all(claim_balance_difference(claim) == 0 for claim in remittance.claims)
        assert remittance.payee.npi == CLINIC.npi and remittance.payee.tax_id == "123456789"
        assert remittance.trace_number.isdigit() and remittance.payment_method in ("ACH", "CHK", "NON")
    assert [c.patient_control_number for r in remittances for c in r.claims] == ["PCN001", "PCN009", "TIM1"]
    assert remittances[1].claims[0].patient.first_name == "TIM" and remittances[1].claims[0].insured.first_name == "MARY"
    assert len({r.trace_number for r in remittances}) == 2
    assert client.get("/_sandbox/state").json() == {"clearinghouse": {"batches": 1, "claims": 3, "eras": 1}}


def test_an_837i_era_is_ready_after_the_delay_without_being_released():
    # given a clearinghouse whose payer answers in a fifth of a second
    server = serve(Clearinghouse(seed=SEED, roster=roster_of(MEMBERS), era_delay_s=0.2))
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            text = write_837i([outpatient_claim()], submitter=SUBMITTER, receiver=RECEIVER, control_number=9, created_at=CREATED_AT)

            # when
            batch_id = submit(client, text).headers["x-batch-id"]
            pending = client.get(f"/clearinghouse/batches/{batch_id}").json()["era"]
            time.sleep(0.3)

            # then
            (remittance,) = download(client, batch_id)
    finally:
        server.stop()
    assert pending == "pending"
    (claim,) = remittance.claims
    assert (claim.patient_control_number, claim.facility_type, claim.frequency) == ("IPCN1", "13", "1")
    assert [line.revenue_code for line in claim.lines] == ["0450", ""]
    assert [line.procedure.qualifier for line in claim.lines] == ["HC", "NU"]  # a revenue-code-only line is paid as NU
    assert balance_difference(remittance) == 0


def test_era_links_are_signed_and_expire(client, clearinghouse):
    # given a released ERA
    batch_id = submit(client, professional([office_visit()])).headers["x-batch-id"]
    release(client)
    link = clearinghouse.era_link(batch_id)
    parts = urlsplit(link)
    query = {key: values[0] for key, values in parse_qs(parts.query).items()}
    assert parts.path == f"/clearinghouse/era/{batch_id}" and client.get(link).status_code == 200

    # when the signature or the expiry is tampered with, the link is refused
    forged = client.get(parts.path, params={**query, "signature": "0" * 64})
    extended = client.get(parts.path, params={**query, "expires": str(int(query["expires"]) + 3600)})
    unsigned = client.get(parts.path)
    expired = client.get(clearinghouse.era_link(batch_id, ttl_s=-1))
    unknown = client.get(f"/clearinghouse/era/BNOSUCHBATCH?expires={query['expires']}&signature={query['signature']}")

    # then
    assert (forged.status_code, forged.json()["code"]) == (403, "invalid_signature")
    assert (extended.status_code, extended.json()["code"]) == (403, "invalid_signature")
    assert (unsigned.status_code, unsigned.json()["code"]) == (403, "invalid_signature")
    assert (expired.status_code, expired.json()["code"]) == (410, "link_expired")
    assert (unknown.status_code, unknown.json()["code"]) == (404, "unknown_batch")
    assert client.get("/clearinghouse/batches/BNOSUCHBATCH").status_code == 404


def test_the_malformed_fault_cuts_era_downloads_short(client, clearinghouse):
    # given a released ERA and every download damaged
    batch_id = submit(client, professional([office_visit()])).headers["x-batch-id"]
    release(client)
    client.post("/_sandbox/faults", json={"malformed_rate": 1})

    # when
    damaged = client.get(clearinghouse.era_link(batch_id))
    client.post("/_sandbox/faults", json={"malformed_rate": 0})
    intact = client.get(clearinghouse.era_link(batch_id))

    # then the damaged 835 ends before GE/IEA, which a reader refuses; the next download is whole
    assert damaged.status_code == 200 and not damaged.text.rstrip("~").endswith("IEA")
    with pytest.raises(X12Error, match="ends inside an open functional group"):
        parse_835(damaged.text)
    assert balance_difference(parse_835(intact.text)[0]) == 0


def test_a_malformed_837_gets_a_rejecting_999_naming_the_segment_and_no_era(client, clearinghouse):
    # given an 837 whose CLM02 is not an amount
    text = professional([office_visit()]).replace("CLM*PCN001*305.75*", "CLM*PCN001*30x5.75*")

    # when
    response = submit(client, text)

    # then
    assert response.status_code == 200
    (ack,) = parse_999(response.text)
    assert (ack.group_status, ack.transactions_accepted) == ("R", 0)
    (transaction,) = ack.transactions
    assert (transaction.status, transaction.error_codes) == ("R", ["5"])
    (error,) = transaction.segment_errors
    assert (error.segment_id, error.position, error.loop_id, error.code, error.context) == ("CLM", 19, "2300", "8", [["CLM01:PCN001"]])
    assert [(e.position, e.data_element_reference, e.code, e.bad_data) for e in error.element_errors] == [(2, "782", "6", "30x5.75")]
    batch_id = response.headers["x-batch-id"]
    status = client.get(f"/clearinghouse/batches/{batch_id}").json()
    assert (status["status"], status["accepted"], status["claims"], status["era"], status["era_url"]) == ("rejected", False, 0, "none", None)
    assert status["errors"] == ["transaction set '0001' (segment 3): segment 21 (CLM), element CLM02: '30x5.75' is not a number"]
    assert release(client) == {"released": 0} and clearinghouse.era_link(batch_id) is None
    assert clearinghouse.state() == {"batches": 1, "claims": 0, "eras": 0}


def test_one_bad_transaction_set_rejects_only_itself(clearinghouse, monkeypatch):
    # given a batch split into two transaction sets, the second with a claim missing its service date
    from formats.x12 import claim837

    monkeypatch.setattr(claim837, "MAX_CLAIMS_PER_TRANSACTION", 1)
    segments = professional([office_visit(), office_visit(patient_control_number="PCN2")]).split("~")
    segments.pop(max(i for i, seg in enumerate(segments) if seg.startswith("DTP*472")))  # the last line's date
    trailer = next(i for i, seg in enumerate(segments) if seg.startswith("SE*") and seg.endswith("*0002"))
    segments[trailer] = f"SE*{int(segments[trailer].split('*')[1]) - 1}*0002"  # SE01 counts one segment fewer
    text = "~".join(segments)

    # when
    submission = clearinghouse.submit(text, submitter="SUB123")

    # then
    (ack,) = parse_999(submission.ack_999)
    assert ack.group_status == "P" and [t.status for t in ack.transactions] == ["A", "R"]
    (error,) = ack.transactions[1].segment_errors
    assert (error.segment_id, error.code, error.loop_id) == ("DTP", "3", "2400")
    assert (submission.accepted, submission.claims) == (True, 1)
    assert submission.errors[0].startswith("transaction set '0002'") and "DTP*472" in submission.errors[0]


@pytest.mark.parametrize(("body", "headers", "status", "code"), [
    (b"", {"X-Submitter": "SUB123"}, 400, "empty_body"),
    (b"ISA*00", {}, 400, "missing_submitter"),
    (b"ISA*00", {"X-Submitter": "x" * 201}, 400, "invalid_submitter"),
], ids=["empty", "no submitter", "long submitter"])
def test_hostile_requests_get_json_errors(client, body, headers, status, code):
    response = client.post("/clearinghouse/submit", content=body, headers=headers)

    assert (response.status_code, response.json()["code"]) == (status, code)
    assert client.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 0


def test_a_body_over_one_mebibyte_is_refused_before_it_is_read(client):
    # A raw request declaring the size: the server answers 413 without reading the body. (Sending the
    # body too races the server closing the connection with unread data, which can reset it.)
    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(b"POST /clearinghouse/submit HTTP/1.1\r\nHost: sandbox\r\nX-Submitter: SUB123\r\n"
                           b"Content-Length: 1048577\r\n\r\n")
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk

    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 413") and json.loads(body)["code"] == "too_large"
    assert client.get("/_sandbox/state").json()["clearinghouse"]["batches"] == 0


def test_wrong_methods_and_paths_get_json_errors(client):
    assert (client.get("/clearinghouse/submit").status_code, client.get("/clearinghouse/submit").json()["code"]) == (405, "method_not_allowed")
    assert client.post("/clearinghouse/batches/B1").status_code == 405
    assert client.get("/clearinghouse/nowhere").json()["code"] == "not_found"


@pytest.mark.parametrize("body", [
    bytes(range(256)) * 8,  # binary
    b"ISA*00*" + b"\xff" * 2000,  # a broken ISA
    b"hello, clearinghouse",
], ids=["binary", "broken ISA", "prose"])
def test_a_file_that_is_not_x12_gets_a_999_rejecting_it(client, body):
    response = submit(client, body)

    assert response.status_code == 200
    (ack,) = parse_999(response.text)
    assert (ack.group_status, [t.status for t in ack.transactions], ack.transactions_accepted) == ("R", ["R"], 0)
    status = client.get(f"/clearinghouse/batches/{response.headers['x-batch-id']}").json()
    assert status["status"] == "rejected" and status["errors"][0].startswith("not an X12 interchange")


def test_envelope_errors_reject_what_they_break(clearinghouse):
    text = professional([office_visit()])

    trailer = next(seg for seg in text.split("~") if seg.startswith("SE*"))
    miscounted = text.replace(trailer, f"SE*{int(trailer.split('*')[1]) + 1}*0001")
    count = parse_999(clearinghouse.submit(miscounted, submitter="S").ack_999)[0]
    group = parse_999(clearinghouse.submit(text.replace("GE*1*42", "GE*2*42"), submitter="S").ack_999)[0]
    no_trailer = parse_999(clearinghouse.submit(text.replace("IEA*1*000000042~", ""), submitter="S").ack_999)[0]

    assert (count.group_status, count.transactions[0].error_codes) == ("R", ["4"])
    assert (group.group_status, group.group_error_codes, group.transactions[0].status) == ("R", ["5"], "A")
    assert no_trailer.group_status == "R"
    assert clearinghouse.state() == {"batches": 3, "claims": 0, "eras": 0}


def test_mutate_refuses_what_it_does_not_know(client):
    assert client.post("/_sandbox/mutate", json={"vendor": "clearinghouse", "release_eras": "yes"}).json()["code"] == "invalid"
    assert client.post("/_sandbox/mutate", json={"vendor": "clearinghouse", "creates": 1}).status_code == 400
    assert client.get("/_sandbox/accounts").json() == {"clearinghouse": []}


# --- the payer's decisions ------------------------------------------------------------------------------------


def test_the_payer_pays_partially_pays_and_denies_deterministically(clearinghouse):
    # given claims whose numbers the payer decides each way, a stranger, and a member whose coverage ended
    payer = SandboxPayer(seed=SEED, roster=None)
    paid = claim_for(payer, "paid")
    deductible, coinsurance, copay = (claim_for(payer, "partial", reason=r) for r in ("1", "2", "3"))
    no_authorization = claim_for(payer, "denied", reason="197")
    not_necessary = claim_for(payer, "denied", reason="50", authorization=True)
    unknown = claim_for(payer, "paid", subscriber=STRANGER, patient_control_number="STRANGER1")
    lapsed = claim_for(payer, "paid", subscriber=ANNA, patient_control_number="LAPSED1")
    claims = [paid, deductible, coinsurance, copay, no_authorization, not_necessary, unknown, lapsed]

    # when
    clearinghouse.submit(professional(claims), submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})
    (batch,) = clearinghouse._batches.values()
    (remittance,) = parse_835(batch.era_835)

    # then
    by_number = {claim.patient_control_number: claim for claim in remittance.claims}
    assert balance_difference(remittance) == 0 and all(claim_balance_difference(c) == 0 for c in remittance.claims)

    def groups(claim_number):
        return sorted({(a.group, a.reason) for a in by_number[claim_number].all_adjustments})

    assert by_number[paid.patient_control_number].status_code == "1" and groups(paid.patient_control_number) == [("CO", "45")]
    assert by_number[paid.patient_control_number].patient_responsibility == 0
    for claim, reason in ((deductible, "1"), (coinsurance, "2"), (copay, "3")):
        assert groups(claim.patient_control_number) == [("CO", "45"), ("PR", reason)]
        assert by_number[claim.patient_control_number].patient_responsibility > 0
    # John's copay and deductible come from the roster: 30 on the first line, at most 250 in all
    assert by_number[copay.patient_control_number].patient_responsibility == Decimal("30.00")
    assert by_number[deductible.patient_control_number].patient_responsibility <= Decimal("250.00")
    for claim, reason, remark in ((no_authorization, "197", "M62"), (not_necessary, "50", "N130"), (unknown, "31", "N382"),
                                  (lapsed, "27", "N30")):
        era_claim = by_number[claim.patient_control_number]
        assert (era_claim.status_code, era_claim.paid, groups(claim.patient_control_number)) == ("4", 0, [("CO", reason)])
        assert era_claim.remark_codes == ["MA01"] and {code for line in era_claim.lines for code in line.remark_codes} == {remark}
    # the same seed decides the same way in another clearinghouse
    again = Clearinghouse(seed=SEED, roster=roster_of(MEMBERS), era_delay_s=0)
    (other,) = parse_835(again._batches[again.submit(professional(claims), submitter="SUB123").batch_id].era_835)
    assert [(c.status_code, c.paid) for c in other.claims] == [(c.status_code, c.paid) for c in remittance.claims]


def test_a_void_reverses_and_a_replacement_reverses_and_pays_again(clearinghouse):
    # given two claims paid in an earlier batch
    payer = SandboxPayer(seed=SEED, roster=None)
    first, second = claim_for(payer, "paid"), claim_for(payer, "partial")
    earlier = clearinghouse.submit(professional([first, second]), submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})
    (paid,) = parse_835(clearinghouse._batches[earlier.batch_id].era_835)
    original = {claim.patient_control_number: claim for claim in paid.claims}

    # when the first is voided and the second replaced with a higher charge, quoting the payer's claim numbers
    void = replace(first, frequency_code="8", payer_claim_control_number=original[first.patient_control_number].payer_claim_control_number)
    replacement_line = ClaimLine("99214", Decimal("200.00"), date(2024, 3, 1))
    replacement = replace(second, frequency_code="7", total_charge=Decimal("200.00"), lines=[replacement_line],
                          payer_claim_control_number=original[second.patient_control_number].payer_claim_control_number)
    later = clearinghouse.submit(professional([void, replacement], control_number=43), submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})
    (corrections,) = parse_835(clearinghouse._batches[later.batch_id].era_835)

    # then the void is one reversal; the replacement a reversal and the corrected payment
    assert [(c.patient_control_number, c.status_code) for c in corrections.claims] == [
        (first.patient_control_number, "22"), (second.patient_control_number, "22"), (second.patient_control_number, "1")]
    voided, reversed_second, corrected = corrections.claims
    for reversal in (voided, reversed_second):
        before = original[reversal.patient_control_number]
        assert (reversal.charge, reversal.paid, reversal.patient_responsibility) == (-before.charge, -before.paid, -before.patient_responsibility)
        assert reversal.payer_claim_control_number == before.payer_claim_control_number
        assert [(a.group, a.reason, a.amount) for a in reversal.all_adjustments] == [(a.group, a.reason, -a.amount) for a in before.all_adjustments]
    assert corrected.charge == Decimal("200.00") and corrected.paid > 0
    assert corrected.references["F8"] == original[second.patient_control_number].payer_claim_control_number
    assert corrected.payer_claim_control_number not in {c.payer_claim_control_number for c in paid.claims}
    assert balance_difference(corrections) == 0 and all(claim_balance_difference(c) == 0 for c in corrections.claims)


def test_a_negative_net_is_carried_forward_and_recouped_from_the_next_payment(clearinghouse):
    # given a paid claim, then its void alone in a batch (the payer takes money back)
    payer = SandboxPayer(seed=SEED, roster=None)
    claim = claim_for(payer, "paid")
    first = clearinghouse.submit(professional([claim]), submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})
    (paid,) = parse_835(clearinghouse._batches[first.batch_id].era_835)
    void = replace(claim, frequency_code="8", payer_claim_control_number=paid.claims[0].payer_claim_control_number)

    # when
    second = clearinghouse.submit(professional([void], control_number=43), submitter="SUB123")
    third = clearinghouse.submit(professional([claim_for(payer, "paid", patient_control_number="NEXT1")], control_number=44),
                                 submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})
    (taken_back,) = parse_835(clearinghouse._batches[second.batch_id].era_835)
    (following,) = parse_835(clearinghouse._batches[third.batch_id].era_835)

    # then the void's 835 pays nothing and carries the debt forward (PLB FB, negative: it adds to the payment)
    owed = paid.claims[0].paid
    assert (taken_back.handling, taken_back.payment_method, taken_back.payment_amount) == ("H", "NON", 0)
    assert [(a.reason, a.reference, a.amount) for a in taken_back.provider_adjustments] == [("FB", taken_back.trace_number, -owed)]
    # and the next payment is reduced by it (PLB FB, positive), as far as it goes
    recouped = min(owed, following.claims[0].paid)
    assert [(a.reason, a.reference, a.amount) for a in following.provider_adjustments] == [("FB", taken_back.trace_number, recouped)]
    assert following.payment_amount == following.claims[0].paid - recouped
    assert balance_difference(taken_back) == balance_difference(following) == 0


def test_a_replacement_of_a_payment_the_payer_never_saw_reverses_it_as_it_was_decided(clearinghouse):
    # given Tim's replacement claim quoting payer claim number PAYER123, from before the sandbox started
    submission = clearinghouse.submit(professional([dependent_correction()]), submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})

    # when
    (remittance,) = parse_835(clearinghouse._batches[submission.batch_id].era_835)

    # then
    reversal, corrected = remittance.claims
    assert (reversal.status_code, reversal.payer_claim_control_number, reversal.charge) == ("22", "PAYER123", Decimal("-80.00"))
    assert (corrected.status_code, corrected.references["F8"], corrected.charge) == ("1", "PAYER123", Decimal("80.00"))


def test_the_same_original_claim_sent_twice_is_denied_as_a_duplicate(clearinghouse):
    payer = SandboxPayer(seed=SEED, roster=None)
    text = professional([claim_for(payer, "paid")])
    first = clearinghouse.submit(text, submitter="SUB123")
    second = clearinghouse.submit(text, submitter="SUB123")
    clearinghouse.mutate({"release_eras": True})

    (paid,) = parse_835(clearinghouse._batches[first.batch_id].era_835)
    (duplicate,) = parse_835(clearinghouse._batches[second.batch_id].era_835)

    assert paid.claims[0].status_code == "1"
    assert (duplicate.claims[0].status_code, duplicate.claims[0].paid) == ("4", 0)
    assert {(a.group, a.reason) for a in duplicate.claims[0].all_adjustments} == {("CO", "18")}
    assert paid.trace_number != duplicate.trace_number


# --- eligibility ------------------------------------------------------------------------------------------------


def inquiry(subscriber: Subscriber, payer: Payer = COMMERCIAL, trace: str = "TRACE1") -> str:
    return write_270(subscriber=subscriber, payer=payer, provider=CLINIC, service_date=date(2024, 3, 5), service_types=("30", "98"),
                     trace_number=trace, submitter=SUBMITTER, receiver=RECEIVER, control_number=44, created_at=CREATED_AT)


def test_eligibility_answers_active_inactive_and_unknown_members(client):
    # when
    active, inactive, unknown = (client.post("/clearinghouse/eligibility", content=inquiry(subscriber, trace=f"T{n}"))
                                 for n, subscriber in enumerate((JOHN, ANNA, STRANGER)))

    # then
    assert active.status_code == inactive.status_code == unknown.status_code == 200
    assert active.headers["content-type"] == "application/edi-x12"
    (john,) = parse_271(active.text).members
    assert john.is_active and john.trace_numbers == ["T0"]
    assert {b.plan_name for b in john.active_benefits} == {"GOLD PPO"}
    assert [(b.amount, b.service_types) for b in john.copays] == [(Decimal("30.00"), ("98",))]
    assert [b.amount for b in john.deductibles] == [Decimal("250.00")]
    (anna,) = parse_271(inactive.text).members
    assert not anna.is_active and [b.code for b in anna.benefits] == ["6", "6"] and anna.trace_numbers == ["T1"]
    (ned,) = parse_271(unknown.text).members
    assert not ned.is_active and [r.reason_code for r in ned.rejections] == ["75"] and ned.trace_numbers == ["T2"]


def test_a_270_with_other_delimiters_is_answered_in_them(client):
    delimiters = Delimiters(element="|", component=">", repetition="!", segment="\n")
    text = write_270(subscriber=JOHN, payer=COMMERCIAL, provider=CLINIC, service_date=date(2024, 3, 5), trace_number="PIPE1",
                     submitter=SUBMITTER, receiver=RECEIVER, control_number=45, created_at=CREATED_AT, delimiters=delimiters)

    response = client.post("/clearinghouse/eligibility", content=text)

    assert response.status_code == 200 and response.text.startswith("ISA|00|")
    (john,) = parse_271(response.text).members
    assert john.is_active and john.trace_numbers == ["PIPE1"]


def test_a_roster_set_later_is_used(clearinghouse):
    clearinghouse.set_roster(roster_of([]))

    (john,) = parse_271(clearinghouse.eligibility(inquiry(JOHN))).members

    assert [r.reason_code for r in john.rejections] == ["75"]


@pytest.mark.parametrize("body", [b"not a 270", b"\x00\x01\x02", professional([office_visit()]).encode()])
def test_a_270_that_cannot_be_read_is_a_400_saying_why(client, body):
    response = client.post("/clearinghouse/eligibility", content=body)

    assert response.status_code == 400
    assert response.json()["code"] == "invalid_270" and response.json()["detail"].startswith("the 270 cannot be read: ")


def test_an_empty_270_is_a_400(client):
    assert client.post("/clearinghouse/eligibility", content=b"").json()["code"] == "empty_body"


# --- concurrency and robustness ---------------------------------------------------------------------------------


def test_concurrent_submissions_each_get_their_batch_and_trace_numbers(client):
    # given ten practices submitting at once
    results: list[httpx.Response] = []
    lock = threading.Lock()

    def send(number: int) -> None:
        with httpx.Client(base_url=str(client.base_url), timeout=20) as own:
            response = submit(own, professional([office_visit(patient_control_number=f"C{number}")], control_number=100 + number))
        with lock:
            results.append(response)

    threads = [threading.Thread(target=send, args=(n,)) for n in range(10)]

    # when
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    release(client)

    # then
    assert [r.status_code for r in results] == [200] * 10
    batch_ids = {r.headers["x-batch-id"] for r in results}
    assert len(batch_ids) == 10
    assert client.get("/_sandbox/state").json()["clearinghouse"] == {"batches": 10, "claims": 10, "eras": 10}
    traces = [remittance.trace_number for batch_id in batch_ids for remittance in download(client, batch_id)]
    assert len(set(traces)) == 10


def test_random_damage_to_an_837_never_breaks_the_clearinghouse(clearinghouse):
    # given a valid 837 damaged at random: segments dropped, repeated or swapped, characters changed
    rng = random.Random(20250314)
    original = professional([office_visit(), dependent_correction()]).split("~")[:-1]
    for _ in range(300):
        segments = list(original)
        for _ in range(rng.randint(1, 3)):
            index = rng.randrange(len(segments))
            action = rng.choice(("drop", "repeat", "swap", "garble"))
            if action == "drop":
                segments.pop(index)
            elif action == "repeat":
                segments.insert(index, segments[index])
            elif action == "swap":
                other = rng.randrange(len(segments))
                segments[index], segments[other] = segments[other], segments[index]
            else:
                text = segments[index]
                position = rng.randrange(len(text))
                segments[index] = text[:position] + rng.choice("*:~^X9 \x00") + text[position + 1:]
        damaged = "~".join(segments) + "~"

        # when
        submission = clearinghouse.submit(damaged, submitter="SUB123")

        # then the answer is a 999 the hub can read, and a rejection says why
        acks = parse_999(submission.ack_999)
        assert acks
        assert submission.accepted == any(t.accepted for ack in acks if ack.group_status != "R" for t in ack.transactions)
        if not submission.accepted:
            assert submission.errors
