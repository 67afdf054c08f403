"""The simulated eClinicalWorks vendor: accounts, MFA, sessions, module entitlements, mutations.

One practice's records (data.Practice) behind the portal surface (portal.py) under /ecw/. Every
account belongs to the practice and is licensed a set of modules: "ehr" (charts, scheduling),
"healow" (telehealth, the /healow/ surface), "rcm" (eligibility and claims); and API writes only
with a write contract. No idempotency keys and no webhooks: a client finds changes by polling, and
makes bookings safe to retry with its own `reference`.

With a clearinghouse (sandbox.clearinghouse), eligibility inquiries and claim files go through it,
and the vendor tells it, as the payers' roster, what each payer knows of the practice's patients.
"""

from __future__ import annotations

import copy
import random
import secrets
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from sandbox.ecw import scheduling
from sandbox.ecw.data import AMENDMENT_REASONS, PRACTICE_CODE, PRACTICE_NAME, RESOURCES, Practice, amendment
from sandbox.ecw.errors import refuse
from sandbox.server import Request, Response
from sandbox.wellsky.data import npi_with_check_digit, totp_secret_for

DEFAULT_SESSION_TTL_S = 900  # portal sessions: 15 minutes
CHALLENGE_TTL_S = 300
MAX_MFA_ATTEMPTS = 5  # wrong codes before a challenge is spent and the login must start again
MODULES = ("ehr", "healow", "rcm")
MFA_METHODS = ("", "totp", "sms", "email")


@dataclass
class Account:
    username: str
    password: str
    practice_code: str
    practice_name: str
    mfa: str  # "", "totp", "sms" or "email"
    modules: list[str]  # of MODULES
    write: bool  # the practice signed the API write contract for this account
    totp_secret: str = ""
    phone: str = ""
    email: str = ""
    relay_url: str = ""  # where the SMS gateway / mailbox forwards codes (the hub's MFA relay), if set


@dataclass
class Session:
    username: str
    expires_at: float  # monotonic


@dataclass
class Challenge:
    username: str
    method: str
    code: str
    expires_at: float
    id: str = ""
    attempts: int = 0


@dataclass
class ClaimBatch:
    """A claim file handed to the clearinghouse through this practice."""

    batch_id: str
    accepted: bool
    claims: int
    ack_999: str
    errors: list[str]
    submitted_by: str
    submitted_at: str


@dataclass
class EClinicalWorks:
    key: str = "eclinicalworks"
    prefix: str = "ecw"
    seed: int = 1
    scale: int = 120
    clearinghouse: Any = None  # sandbox.clearinghouse.vendor.Clearinghouse, or None (eligibility and claims then answer 503)
    practice: Practice = None  # type: ignore[assignment]
    accounts_by_name: dict[str, Account] = field(default_factory=dict)
    sessions: dict[str, Session] = field(default_factory=dict)
    challenges: dict[str, Challenge] = field(default_factory=dict)
    claims: dict[str, ClaimBatch] = field(default_factory=dict)
    control_number: int = 0  # ISA13 of the 270s sent
    lock: threading.RLock = field(default_factory=threading.RLock)
    server: Any = None
    # The FHIR R4 surface (fhir.py, bulk.py): requests per clock minute per practice base URL (0: none), the wall
    # clock it counts minutes and token lifetimes by (tests inject one), and how bulk exports behave.
    fhir_rate_limit_per_minute: int = 250
    fhir_rate_window_s: int = 60  # the real one counts per clock minute; tests shorten the window
    fhir_clock: Any = time.time
    fhir_export_polls: int = 2  # status polls answered 202 before the manifest
    fhir_export_seconds: float = 0  # ... and seconds that must pass
    fhir_export_retry_after_s: int = 2  # the Retry-After of the kick-off and the polls (the real one says 120)
    fhir_export_file_size: int = 10_000  # resources per NDJSON file

    def __post_init__(self) -> None:
        if self.practice is None:
            self.practice = Practice(seed=self.seed, scale=self.scale)
        password = f"sandbox-{self.seed}"
        for account in (
            Account("riverbend.admin", password, PRACTICE_CODE, PRACTICE_NAME, "totp", ["ehr", "healow", "rcm"], True),
            Account("riverbend.frontdesk", password, PRACTICE_CODE, PRACTICE_NAME, "sms", ["ehr", "healow"], True, phone="+15555550201"),
            Account("riverbend.billing", password, PRACTICE_CODE, PRACTICE_NAME, "email", ["ehr", "rcm"], True,
                    email="billing@riverbend.example"),
            Account("riverbend.api", password, PRACTICE_CODE, PRACTICE_NAME, "", ["ehr", "healow", "rcm"], True),
            Account("riverbend.viewer", password, PRACTICE_CODE, f"{PRACTICE_NAME} (read-only API licence)", "", ["ehr", "healow", "rcm"], False),
        ):
            account.totp_secret = totp_secret_for(self.seed, account.username)
            self.accounts_by_name[account.username] = account
        if self.clearinghouse is not None:
            self.clearinghouse.set_roster(self.roster)

    def attach(self, server) -> None:
        self.server = server

    # --- the control plane ----------------------------------------------------------------------
    def accounts(self) -> list[dict[str, Any]]:
        from sandbox.ecw import fhir  # the FHIR backend clients (kind "fhir_backend") with their private keys

        return [asdict(a) for a in self.accounts_by_name.values()] + fhir.backend_accounts(self)

    def configure_account(self, username: str, values: dict[str, Any]) -> dict[str, Any]:
        account = self.accounts_by_name.get(username)
        if account is None:
            raise refuse(104, f"no account {username!r}")
        checks = {"relay_url": lambda v: isinstance(v, str) and (v == "" or v.startswith(("http://", "https://"))),
                  "mfa": lambda v: v in MFA_METHODS, "write": lambda v: isinstance(v, bool),
                  "modules": lambda v: isinstance(v, list) and all(isinstance(m, str) and m in MODULES for m in v)}
        for key, valid in checks.items():
            if key in values and not valid(values[key]):
                raise refuse(106, f"{key} has a value this account cannot take", field=key)
        for key in checks:
            if key in values:
                setattr(account, key, sorted(set(values[key])) if key == "modules" else values[key])
        return asdict(account)

    def state(self) -> dict[str, int]:
        from sandbox.ecw import fhir

        return {**{name: self.practice.table(name).live_count() for name in RESOURCES}, **fhir.counters(self)}

    # --- dispatch ---------------------------------------------------------------------------------
    def handle(self, request: Request) -> Response:
        from sandbox.ecw import portal  # the surface imports this module

        if request.path == "/fhir" or request.path.startswith("/fhir/"):
            from sandbox.ecw import fhir

            return fhir.handle(self, request)
        return portal.handle(self, request)

    # --- login and sessions ------------------------------------------------------------------------
    def session_ttl(self, request: Request) -> int:
        return request.faults.session_ttl_s or DEFAULT_SESSION_TTL_S

    def check_password(self, username: Any, password: Any) -> Account:
        account = self.accounts_by_name.get(username) if isinstance(username, str) else None
        if account is None or not isinstance(password, str) or not secrets.compare_digest(password.encode(), account.password.encode()):
            raise refuse(401, "the username or password is wrong")
        return account

    def start_challenge(self, account: Account) -> Challenge:
        code = "" if account.mfa == "totp" else f"{secrets.randbelow(10**6):06d}"
        challenge = Challenge(account.username, account.mfa, code, time.monotonic() + CHALLENGE_TTL_S, id=secrets.token_urlsafe(12))
        with self.lock:
            self.challenges[challenge.id] = challenge
        if code:
            text = f"Your eClinicalWorks verification code is {code}. It expires in 5 minutes."
            to = account.phone if account.mfa == "sms" else account.email
            if self.server is not None:
                self.server.send_message(channel=account.mfa, to=to, text=text, code=code)
            if account.relay_url:
                threading.Thread(target=_forward, args=(account.relay_url, text, account.mfa), daemon=True).start()
        return challenge

    def answer_challenge(self, challenge_id: Any, code: Any) -> Account:
        import pyotp

        with self.lock:
            challenge = self.challenges.get(challenge_id) if isinstance(challenge_id, str) else None
            if challenge is None or challenge.expires_at < time.monotonic():
                raise refuse(403, "the MFA challenge is unknown or expired; authenticate again")
        account = self.accounts_by_name[challenge.username]
        if not isinstance(code, str) or not code.isascii() or not code.isdigit():
            code = ""  # a wrong code, and an attempt
        if not code:
            ok = False
        elif challenge.method == "totp":
            ok = pyotp.TOTP(account.totp_secret).verify(code, valid_window=1)
        else:
            ok = secrets.compare_digest(code.encode(), challenge.code.encode())
        with self.lock:
            if ok or challenge.attempts + 1 >= MAX_MFA_ATTEMPTS:
                self.challenges.pop(challenge_id, None)
            challenge.attempts += 1
        if not ok:
            raise refuse(402, "the verification code is wrong")
        return account

    def open_session(self, account: Account, ttl: int) -> str:
        token = secrets.token_urlsafe(32)
        with self.lock:
            self.sessions[token] = Session(account.username, time.monotonic() + ttl)
        return token

    def session_account(self, request: Request) -> tuple[str, Account]:
        """The bearer token's account (404 unknown, 405 expired)."""
        header = request.headers.get("Authorization") or ""
        token = header[7:].strip() if header[:7].lower() == "bearer " else ""
        with self.lock:
            session = self.sessions.get(token)
        if session is None:
            raise refuse(404, "no valid session; POST /ecw/authenticate first")
        if session.expires_at < time.monotonic():
            with self.lock:
                self.sessions.pop(token, None)
            raise refuse(405, "the session expired; authenticate again")
        return token, self.accounts_by_name[session.username]

    @staticmethod
    def require_module(account: Account, module: str) -> None:
        if module not in account.modules:
            raise refuse(410, f"the {module} module is not licensed for account {account.username!r}", module=module,
                         licensed=list(account.modules))

    @staticmethod
    def require_write(account: Account) -> None:
        if not account.write:
            raise refuse(411, f"account {account.username!r} has no API write contract", username=account.username)

    # --- bookings ------------------------------------------------------------------------------------
    def create_appointment(self, account: Account, body: Any, *, via: str, telehealth: bool | None = None) -> Response:
        """POST /create_appointment and /healow/book: 201 with the appointment, or the rule it breaks."""
        practice = self.practice
        fields = scheduling.parse_booking(practice, body, booked_via=via, telehealth=telehealth)
        if fields["telehealth"]:
            self.require_module(account, "healow")
        with self.lock:
            existing = scheduling.existing_reference(practice, fields["reference"])
            if existing is not None:
                raise refuse(203, f"an appointment with reference {fields['reference']!r} already exists: {existing['id']}",
                             appointment_id=existing["id"], appointment=existing)
            booking = scheduling.resolve(practice, fields)
            block = scheduling.check(practice, booking)
            index = scheduling.book(practice, booking, block)
        return Response(201, practice.record("appointments", index))

    # --- the payers' view, for the clearinghouse -------------------------------------------------------
    def roster(self, payer_id: str, member_id: str):
        """What a payer knows of a member: sandbox.clearinghouse.payer.Member, or None when unknown."""
        from sandbox.clearinghouse.payer import Member

        patient = self.practice.patient_of_member(member_id)
        view = self.practice.payer_view(patient) if patient is not None else None
        if view is None or view["payer_id"] != payer_id:
            return None
        return Member(payer_id=payer_id, member_id=member_id, first_name=view["first_name"], last_name=view["last_name"],
                      birth_date=view["birth_date"], plan_name=view["plan_name"], active=view["active"], copay=view["copay"],
                      deductible=view["deductible"], coverage_start=view["coverage_start"], coverage_end=view["coverage_end"])

    def next_control_number(self) -> int:
        with self.lock:
            self.control_number = self.control_number % 999_999_999 + 1
            return self.control_number

    # --- changes made in the vendor (POST /_sandbox/mutate) ------------------------------------------
    def mutate(self, spec: dict[str, Any]) -> dict[str, Any]:
        """{"creates", "changes", "deletes", "resource"?, "sign_notes", "amend"}: what changed, by resource.

        Deleted records leave the lists (no tombstones). Signing and amending notes change their
        encounters, which are listed under "changed" as well as "signed_notes"/"amended_notes".
        """
        counts = {}
        for key in ("creates", "changes", "deletes", "sign_notes", "amend"):
            value = spec.get(key, 0)
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 100_000:
                raise refuse(106, f"{key} must be a whole number from 0 to 100000", field=key)
            counts[key] = value
        only = spec.get("resource")
        if only is not None and (not isinstance(only, str) or only not in RESOURCES):
            raise refuse(106, f"resource must be one of {', '.join(RESOURCES)}", field="resource")
        from sandbox.ecw import fhir

        fhir_settings = fhir.configure(self, spec)  # fhir_rate_limit_per_minute, fhir_export_*: checked, then set
        rng = self.server.rng if self.server is not None else random.Random(self.seed)
        done: dict[str, Any] = {"created": {}, "changed": {}, "deleted": {}, "signed_notes": [], "amended_notes": []}
        if fhir_settings:
            done["fhir"] = fhir_settings
        with self.lock:
            for _ in range(counts["creates"]):
                found = self._create_one(rng, only)
                if found:
                    done["created"].setdefault(found[0], []).append(found[1])
            for _ in range(counts["changes"]):
                found = self._change_one(rng, only)
                if found:
                    done["changed"].setdefault(found[0], []).append(found[1])
            for _ in range(counts["deletes"]):
                found = self._delete_one(rng, only)
                if found:
                    done["deleted"].setdefault(found[0], []).append(found[1])
            for key, statuses, action in (("sign_notes", ("draft",), self._sign), ("amend", ("signed", "locked"), self._amend)):
                for _ in range(counts[key]):
                    index = self._random_live(rng, "encounters", lambda i, s=statuses: self._note_status(i) in s)
                    if index is None:
                        break
                    record_id = action(rng, index)
                    done["signed_notes" if key == "sign_notes" else "amended_notes"].append(record_id)
                    done["changed"].setdefault("encounters", []).append(record_id)
        return done

    def _note_status(self, index: int) -> str:
        fields = self.practice.table("encounters").fields(index)
        return (fields.get("progress_note") or {}).get("status", "")

    def _random_live(self, rng, resource: str, where=None) -> int | None:
        table = self.practice.table(resource)
        for _ in range(400):
            index = rng.randrange(table.count)
            if index not in table.deleted and (where is None or where(index)):
                return index
        return None

    def _now(self) -> str:
        return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    def _sign(self, rng, index: int) -> str:
        table = self.practice.table("encounters")
        fields = copy.deepcopy(table.fields(index))
        note = fields["progress_note"]
        note.update(status="signed", signed_at=self._now(), signed_by=fields["provider_id"])
        if note.get("ai_generated"):
            note["text"] = note["text"].replace("[Sunoh.ai draft, pending provider review] ", "[Sunoh.ai draft, reviewed and signed] ")
        table.replace(index, fields)
        return table.id_of(index)

    def _amend(self, rng, index: int) -> str:
        table = self.practice.table("encounters")
        fields = copy.deepcopy(table.fields(index))
        note = fields["progress_note"]
        reason = rng.choice(tuple(AMENDMENT_REASONS))
        note["amendments"].append(amendment(note, reason, f"Addendum: {AMENDMENT_REASONS[reason].lower()}.", self._now(),
                                            fields["provider_id"]))
        table.replace(index, fields)
        return table.id_of(index)

    def _create_one(self, rng, only: str | None) -> tuple[str, str] | None:
        practice = self.practice
        resource = only or ("patients" if rng.random() < 0.25 else "appointments")
        table = practice.table(resource)
        if resource == "appointments":
            return self._book_somewhere(rng)
        fields = copy.deepcopy(table.fields(rng.randrange(table.base_count)))
        index = table.count
        if resource == "patients":
            mrn, account = f"RB{200000 + index}", f"{10_000_000 + index * 7 % 10_000_000:08d}"
            coverage = practice.coverage_for(index)
            fields.update(mrn=mrn, account_number=account, last_name=f"{fields['last_name']}-{index}", coverage=coverage,
                          financial_class="insurance" if coverage else "self_pay",
                          identifiers=[{"type": "MRN", "value": mrn}, {"type": "ACCOUNT", "value": account}])
        elif resource == "providers":
            fields.update(npi=npi_with_check_digit(f"1{(index * 7919 + 3957 + practice.seed) % 10**8:08d}"),
                          last_name=f"{fields['last_name']}-{index}", email=f"provider{index}@riverbend.example")
        elif resource == "facilities":
            fields.update(code=f"RB{index + 1:03d}", name=f"{PRACTICE_NAME} – new site ({index + 1})",
                          npi=npi_with_check_digit(f"15{(index * 7907 + practice.seed) % 10**7:07d}"))
        elif resource == "encounters":  # a visit documented without an appointment (walk-in, phone)
            note = fields["progress_note"]
            note.update(note_id=f"PN{index:07d}", status="draft", signed_at=None, signed_by=None, locked_at=None, locked_by=None,
                        amendments=[], created_at=self._now())
            fields["appointment_id"] = None
        return resource, table.id_of(table.create(fields))

    def _book_somewhere(self, rng) -> tuple[str, str] | None:
        """An appointment booked at the front desk: a random provider's free slot in the next two weeks."""
        practice = self.practice
        for _ in range(50):
            provider = rng.randrange(len(practice.plans))
            patient = self._random_live(rng, "patients")
            if patient is None or provider in practice.table("providers").deleted:
                continue
            day = practice.today + timedelta(days=rng.randint(1, 13))
            slots = scheduling.free_slots(practice, provider, day)
            if not slots:
                continue
            slot = rng.choice(slots)
            start = datetime.fromisoformat(slot["start"])
            facility = practice.index("facilities", slot["facility_id"])
            if facility is None:
                continue
            booking = scheduling.Booking(patient, provider, facility, start, None, rng.choice(slot["visit_types"]), False, None, "",
                                         "front_desk")
            block = {"slot_minutes": slot["slot_minutes"]}
            index = scheduling.book(practice, booking, block)
            return "appointments", practice.table("appointments").id_of(index)
        return None

    def _change_one(self, rng, only: str | None) -> tuple[str, str] | None:
        practice = self.practice
        if only:
            resource = only
        else:
            names = [n for n in RESOURCES if n != "facilities"]
            resource = rng.choices(names, weights=[practice.table(n).live_count() for n in names])[0]
        index = self._random_live(rng, resource)
        if index is None:
            return None
        table = practice.table(resource)
        table.change(index)
        return resource, table.id_of(index)

    def _delete_one(self, rng, only: str | None) -> tuple[str, str] | None:
        practice = self.practice
        resource = only or "appointments"
        table = practice.table(resource)
        where = None
        if resource == "appointments":  # the front desk deletes visits to come, which nothing else refers to
            where = lambda i: table.fields(i)["status"] in ("scheduled", "confirmed")  # noqa: E731
        index = self._random_live(rng, resource, where)
        if index is None:
            return None
        table.delete(index)
        return resource, table.id_of(index)

    # --- the records as surfaces serve them ------------------------------------------------------------
    def telehealth_indices(self) -> list[int]:
        """Live healow telehealth appointments, in id order."""
        practice = self.practice
        table = practice.table("appointments")
        base = [i for i in practice.telehealth_base() if i not in table.deleted]
        created = [i for i in range(practice.sizes["appointments"], table.count)
                   if i not in table.deleted and table.fields(i).get("telehealth")]
        return base + created


def _forward(url: str, text: str, channel: str) -> None:
    """The SMS gateway / mail forwarder: post the message to the relay the account names."""
    try:
        httpx.post(url, json={"text": text, "channel": channel}, timeout=5)
    except httpx.HTTPError:
        pass  # a forwarder that cannot reach the hub drops the message; the login times out clearly


ECW = EClinicalWorks  # the short name the sandbox's builders use
