"""The simulated clearinghouse: 837 in, 999 back, 835 later, and 270/271 eligibility, in front of a test payer.

eClinicalWorks practices have no API for claims; they exchange X12 files through a clearinghouse
(../shared/VENDORS.md). This is that exchange, over HTTP under /clearinghouse/:

    POST /clearinghouse/submit          the raw 837 (header X-Submitter): 200 with the 999 text and X-Batch-Id
    GET  /clearinghouse/batches/<id>    JSON: accepted/partially_accepted/rejected, claims, errors, era ready or not, era_url
    GET  /clearinghouse/era/<id>?expires=<unix>&signature=<hex>
                                        the 835 text; 404 unknown batch, 403 bad signature, 410 expired link
    POST /clearinghouse/eligibility     a 270 in, the 271 out; 400 for a 270 that cannot be read

The 835 of a batch is decided when the batch is accepted and released `era_delay_s` later (or at once
after POST /_sandbox/mutate {"vendor": "clearinghouse", "release_eras": true}). Download links are
signed with HMAC-SHA256 under a secret of this instance, and expire.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import re
import secrets
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from formats.x12.eligibility_payer import Coverage, EligibilityAnswer, read_270, write_271
from formats.x12.era835_writer import write_835
from formats.x12.errors import X12Error
from sandbox.clearinghouse.intake import acknowledge, reply_delimiters
from sandbox.clearinghouse.payer import Roster, SandboxPayer, routing_number
from sandbox.server import HttpError, Request, Response

logger = logging.getLogger("sandbox.clearinghouse")

CLEARINGHOUSE_ID = "SBXCLEARING"  # the clearinghouse's interchange id when a file does not name it
DEFAULT_LINK_TTL_S = 300  # lifetime of the signed ERA links handed out by GET /batches/<id>
MAX_SUBMITTER_LENGTH = 200
X12_CONTENT_TYPE = "application/edi-x12"
_BATCH_ID = re.compile(r"[A-Z0-9]{1,40}\Z")
_MAX_CONTROL_NUMBER = 999_999_999


@dataclass
class Submission:
    """The clearinghouse's answer to one submitted file."""

    batch_id: str
    ack_999: str
    accepted: bool  # at least one transaction set passed: its claims go on to the payer
    claims: int  # claims accepted
    errors: list[str]  # why transaction sets or groups were rejected ([] when all passed)


@dataclass
class _Batch:
    batch_id: str
    submitter: str
    submitted_at: datetime
    status: str  # accepted, partially_accepted, rejected
    claims: int
    errors: list[str]
    ack_999: str
    era_835: str | None  # None: nothing was accepted, or the 835 could not be written
    ready_at: float  # monotonic time the 835 is released at
    released: bool = False


class Clearinghouse:
    """A sandbox vendor (key "clearinghouse", served under /clearinghouse/); thread-safe."""

    key = "clearinghouse"
    prefix = "clearinghouse"  # the server matches the first path segment: /clearinghouse/…

    def __init__(self, *, seed: int = 1, roster: Roster | None = None, era_delay_s: float = 2.0) -> None:
        if era_delay_s < 0:
            raise ValueError("era_delay_s must be zero or more")
        self.seed = seed
        self.era_delay_s = era_delay_s
        self.server: Any = None
        self._payer = SandboxPayer(seed=seed, roster=roster)
        self._secret = secrets.token_bytes(32)
        self._lock = threading.RLock()
        self._batches: dict[str, _Batch] = {}
        # Control and trace numbers start at a random place, so that a restarted sandbox does not
        # send a hub the same check or EFT trace number for a different payment.
        self._control_number = secrets.randbelow(100_000_000)
        self._trace_sequence = secrets.randbelow(5_000_000)
        self._routing = routing_number(("clearinghouse-bank", seed))

    def attach(self, server) -> None:
        self.server = server

    # --- the Python API --------------------------------------------------------------------------

    def set_roster(self, roster: Roster) -> None:
        """Use `roster` for the claims and inquiries from now on."""
        with self._lock:
            self._payer.roster = roster

    def submit(self, x12_837: str | bytes, *, submitter: str) -> Submission:
        """Take a batch of claims; never raises for what the file holds.

        A file that breaks the guides gets a 999 rejecting the transaction sets (or groups) at fault,
        naming segment, position and element; one that is not X12 at all gets accepted=False, the
        reasons in `errors` and a 999 whose IK5 and AK9 reject. Accepted claims are adjudicated now;
        their 835 is released `era_delay_s` later.
        """
        now = datetime.now(UTC)
        with self._lock:
            intake = acknowledge(x12_837, submitter=submitter, clearinghouse_id=CLEARINGHOUSE_ID, control_number=self._next_control(),
                                 created_at=now)
            batch_id = self._new_batch_id()
            errors = list(intake.errors)
            era = None
            if intake.claims:
                try:
                    remittances = self._payer.remit(intake.claims, today=now.date(), next_trace=self._next_trace)
                    # Claims were accepted, so the file had an ISA naming its sender and receiver.
                    era = write_835(remittances, sender_id=intake.receiver_id, receiver_id=intake.sender_id,
                                    control_number=self._next_control(), created_at=now)
                except ValueError:  # a simulator bug, not the submitter's: keep the batch, log, and say so
                    logger.exception("clearinghouse: the 835 for batch %s could not be written", batch_id)
                    errors.append("the payer could not produce a remittance for this batch")
            batch = _Batch(batch_id, submitter, now, intake.status, len(intake.claims), errors, intake.ack_999, era,
                           time.monotonic() + self.era_delay_s)
            self._batches[batch_id] = batch
        return Submission(batch_id, intake.ack_999, intake.accepted, len(intake.claims), errors)

    def eligibility(self, x12_270: str | bytes) -> str:
        """The 271 answering every inquiry of a 270; HttpError 400 for a 270 that cannot be read."""
        try:
            inquiries = read_270(x12_270)
        except X12Error as exc:
            raise HttpError(400, "invalid_270", f"the 270 cannot be read: {exc}") from None
        today = datetime.now(UTC).date()
        answers = []
        with self._lock:
            for inquiry in inquiries:
                if not inquiry.member_id:
                    answers.append(EligibilityAnswer(inquiry=inquiry, coverage=None, reject_reason="72"))
                    continue
                member = self._payer.member(inquiry.payer_id, inquiry.member_id, first_name=inquiry.first_name,
                                            last_name=inquiry.last_name, birth_date=inquiry.birth_date)
                if member is None:
                    answers.append(EligibilityAnswer(inquiry=inquiry, coverage=None))
                    continue
                day = inquiry.service_date or today
                answers.append(EligibilityAnswer(inquiry=inquiry, coverage=Coverage(
                    active=member.covers(day), plan_name=member.plan_name, copay=member.copay, deductible=member.deductible,
                    coverage_start=member.coverage_start, coverage_end=member.coverage_end, last_name=member.last_name,
                    first_name=member.first_name, birth_date=member.birth_date,
                )))
            control_number = self._next_control()
        first = inquiries[0]
        text = x12_270.decode("utf-8", "replace") if isinstance(x12_270, bytes) else x12_270
        try:
            # Answered in the inquirer's delimiters, so that every value echoed from the 270 fits.
            return write_271(answers, sender_id=first.interchange_receiver_id or CLEARINGHOUSE_ID, receiver_id=first.interchange_sender_id,
                             sender_qualifier=first.interchange_receiver_qualifier, receiver_qualifier=first.interchange_sender_qualifier,
                             control_number=control_number, delimiters=reply_delimiters(text))
        except ValueError as exc:  # a value no 271 can carry: a control character, or a roster value holding a delimiter
            raise HttpError(400, "invalid_270", f"the 271 cannot be written for this inquiry: {exc}") from None

    def era_link(self, batch_id: str, *, ttl_s: int = DEFAULT_LINK_TTL_S) -> str | None:
        """A signed path and query for the batch's 835 once it is ready, valid `ttl_s` seconds (≤ 0:
        already expired, for testing a client's handling of 410); None before, or when the batch has
        no 835 (nothing accepted) or is unknown."""
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None or not self._ready(batch):
                return None
        expires = int(time.time()) + int(ttl_s)
        return f"/{self.prefix}/era/{batch_id}?expires={expires}&signature={self._sign(batch_id, expires)}"

    # --- the sandbox's control plane -------------------------------------------------------------------

    def state(self) -> dict[str, int]:
        with self._lock:
            batches = list(self._batches.values())
            return {"batches": len(batches), "claims": sum(b.claims for b in batches), "eras": sum(1 for b in batches if self._ready(b))}

    def mutate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """{"release_eras": true} releases every pending 835 now."""
        unknown = set(spec) - {"vendor", "release_eras"}
        if unknown:
            raise HttpError(400, "invalid", f"unknown keys {', '.join(sorted(unknown))}; the clearinghouse knows release_eras")
        release = spec.get("release_eras", False)
        if not isinstance(release, bool):
            raise HttpError(400, "invalid", "release_eras must be true or false")
        released = 0
        if release:
            with self._lock:
                for batch in self._batches.values():
                    if batch.era_835 is not None and not self._ready(batch):
                        batch.released = True
                        released += 1
        return {"released": released}

    def accounts(self) -> list[dict[str, Any]]:
        return []

    def configure_account(self, username: str, values: dict[str, Any]) -> dict[str, Any]:
        raise HttpError(404, "not_found", "the clearinghouse has no login accounts: submitters are named by X-Submitter")

    # --- HTTP ------------------------------------------------------------------------------------------

    def handle(self, request: Request) -> Response:
        path = request.path
        if path == "/submit":
            self._allow(request, "POST")
            return self._submit(request)
        if path == "/eligibility":
            self._allow(request, "POST")
            if not request.body.strip():
                raise HttpError(400, "empty_body", "POST the 270 as the body")
            return Response(200, headers={"Content-Type": X12_CONTENT_TYPE}, raw=self.eligibility(request.body).encode())
        if path.startswith("/batches/"):
            self._allow(request, "GET")
            return Response(200, self._describe(self._batch(path.removeprefix("/batches/"))))
        if path.startswith("/era/"):
            self._allow(request, "GET")
            return self._era(request, path.removeprefix("/era/"))
        raise HttpError(404, "not_found", f"no clearinghouse path {path}; see /submit, /batches/<id>, /era/<id>, /eligibility")

    @staticmethod
    def _allow(request: Request, method: str) -> None:
        if request.method != method:
            raise HttpError(405, "method_not_allowed", f"{request.path} takes {method}", headers={"Allow": method})

    def _submit(self, request: Request) -> Response:
        submitter = (request.headers.get("X-Submitter") or "").strip()
        if not submitter:
            raise HttpError(400, "missing_submitter", "name the submitter (your id at the clearinghouse) in the X-Submitter header")
        if len(submitter) > MAX_SUBMITTER_LENGTH or not submitter.isprintable():
            raise HttpError(400, "invalid_submitter", f"X-Submitter must be printable and at most {MAX_SUBMITTER_LENGTH} characters")
        if not request.body.strip():
            raise HttpError(400, "empty_body", "POST the 837 as the body")
        submission = self.submit(request.body, submitter=submitter)
        headers = {"Content-Type": X12_CONTENT_TYPE, "X-Batch-Id": submission.batch_id}
        return Response(200, headers=headers, raw=submission.ack_999.encode())

    def _batch(self, batch_id: str) -> _Batch:
        with self._lock:
            batch = self._batches.get(batch_id) if _BATCH_ID.match(batch_id) else None
        if batch is None:
            raise HttpError(404, "unknown_batch", f"no batch {batch_id[:60]!r}")
        return batch

    def _describe(self, batch: _Batch) -> dict[str, Any]:
        with self._lock:
            ready = self._ready(batch)
        era = "none" if batch.era_835 is None else "ready" if ready else "pending"
        return {
            "batch_id": batch.batch_id,
            "status": batch.status,
            "accepted": batch.status != "rejected",
            "claims": batch.claims,
            "errors": batch.errors,
            "submitter": batch.submitter,
            "submitted_at": batch.submitted_at.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "era": era,
            "era_ready": ready,
            "era_url": self.era_link(batch.batch_id) if ready else None,
        }

    def _era(self, request: Request, batch_id: str) -> Response:
        batch = self._batch(batch_id)
        expires_text = request.query.get("expires", "")
        signature = request.query.get("signature", "")
        if not expires_text.lstrip("-").isdigit() or len(expires_text) > 20 or not signature:
            raise HttpError(403, "invalid_signature", "the link must carry expires and signature, as era_url gives them")
        expires = int(expires_text)
        if not hmac.compare_digest(signature.encode(), self._sign(batch_id, expires).encode()):
            raise HttpError(403, "invalid_signature", "the signature does not match this link")
        if time.time() > expires:
            raise HttpError(410, "link_expired", "the link expired; GET /clearinghouse/batches/<id> for a fresh era_url")
        with self._lock:
            ready = self._ready(batch)
        if batch.era_835 is None or not ready:
            raise HttpError(404, "era_not_ready", f"batch {batch_id} has no remittance to download")
        data = batch.era_835.encode()
        if request.faults.malformed_rate and request.rng.random() < request.faults.malformed_rate:
            data = data[: data.rfind(b"GE")]  # a transfer cut short: no GE/IEA, which a reader must refuse
        return Response(200, headers={"Content-Type": X12_CONTENT_TYPE}, raw=data)

    # --- helpers -----------------------------------------------------------------------------------------

    def _ready(self, batch: _Batch) -> bool:
        return batch.era_835 is not None and (batch.released or time.monotonic() >= batch.ready_at)

    def _sign(self, batch_id: str, expires: int) -> str:
        return hmac.new(self._secret, f"{batch_id}\n{expires}".encode(), hashlib.sha256).hexdigest()

    def _new_batch_id(self) -> str:
        while True:
            batch_id = f"B{secrets.token_hex(6).upper()}"
            if batch_id not in self._batches:
                return batch_id

    def _next_control(self) -> int:
        self._control_number = self._control_number % _MAX_CONTROL_NUMBER + 1
        return self._control_number

    def _next_trace(self, method: str) -> str:
        """An EFT trace number (15 digits: the originating bank's first 8 routing digits and a
        sequence) or a check number (10 digits)."""
        self._trace_sequence = (self._trace_sequence + 1) % 10_000_000
        if method == "ACH":
            return f"{self._routing[:8]}{self._trace_sequence:07d}"
        return f"{10_000_000 + self._trace_sequence:010d}"
