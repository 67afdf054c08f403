"""A simulated multi-site ambulatory practice on eClinicalWorks: the records every surface serves.

Deterministic from (seed, scale S) and the practice's local `today`: Faker (seeded) fills pools of
names, streets and cities once; each record is then built on its own from a small PRNG seeded with
(seed, resource, index, version), so a listing generates only the page it answers (see
sandbox.table). Ready in well under a second at S = 100,000; sizes grow linearly:

    facilities    max(2, S/2000)   one practice ("ecw-demo-practice"), many sites
    providers     about S/80       each of one specialty edition, with a weekly template per facility
                                   (as many as keep generated appointments under 65 % of template slots)
    patients      S
    appointments  3 S              over four weeks: two past, two to come (today included)
    encounters    about 1.5 S      one per checked-out past appointment

Times are the practice's local time, a fixed UTC-05:00 (`LOCAL_ZONE`), written ISO 8601 with the
offset. Every record a surface serves is a plain dict with `id` (the vendor id, e.g. "PAT0000042",
ordered as the index) and `modified` (UTC, text that sorts) besides the fields below.

facilities   code, name, practice_code, npi, tax_id, place_of_service ("11"), phone, address
             {line1, line2, city, state, zip}, time_zone, utc_offset, active
providers    npi (Luhn-valid with the 80840 prefix), first_name, last_name, credentials, specialty,
             taxonomy_code, edition ("primary_care" | "behavioral_health"), home_facility_id,
             facility_ids, templates [{facility_id, weekday (ISO 1 = Monday), day, start "HH:MM",
             end "HH:MM", slot_minutes, visit_types [codes]}], telehealth_enabled, sunoh_enabled,
             phone, email, status
patients     mrn, account_number, first_name, middle_name, last_name, date_of_birth, sex (F|M|U),
             language, phone, email, address, home_facility_id, facility_ids, primary_provider_id,
             identifiers [{type: MRN|ACCOUNT|MEDICAID, value}], coverage [{priority, payer_id,
             payer_name, plan_name, member_id, group_number, relationship, claim_filing_indicator,
             effective_date, termination_date}] (empty for self-pay), financial_class,
             portal_enrolled, status
appointments patient_id, provider_id, facility_id, start, end, duration_minutes, visit_type,
             visit_type_name, telehealth, visit_mode ("in_person" | "telehealth"), healow
             ({meeting_id, join_url} or None), status (scheduled | confirmed | checked_out | no_show
             | cancelled), reason, comment, reference (the client's, or None), booked_via
             (front_desk | healow | api), encounter_id (or None)
encounters   appointment_id, patient_id, provider_id, facility_id, edition, date, start, end,
             visit_type, telehealth, place_of_service ("11" office, "10" telehealth at home),
             diagnoses [{rank, system "ICD-10-CM", code, description}], progress_note, and by edition:
               primary_care       chief_complaint, vitals ({height_in, weight_lb, bmi, bp_systolic,
                                  bp_diastolic, pulse, resp_rate, temp_f, spo2, taken_at}, None for
                                  telehealth), procedures [{code, system "CPT", description, units,
                                  modifiers, charge (text, dollars), diagnosis_pointers}]
               behavioral_health  session_minutes, psychotherapy_cpt (90832 | 90834 | 90837),
                                  psychotherapy_charge, assessments {phq9: {score, severity},
                                  gad7: {score, severity}}, risk_assessment {tool, suicidal_ideation,
                                  suicide_risk, homicidal_ideation, safety_plan_reviewed}
progress_note  note_id, status (draft | signed | locked), source ("provider" | "sunoh_ai"),
               ai_generated, ai_vendor ("Sunoh.ai" or None), author_id, created_at, signed_at,
               signed_by, locked_at, locked_by, text, amendments [{amendment_id, reason_code,
               reason, text, amended_at, amended_by, signed_at}] (only on signed or locked notes;
               an amendment is re-signed when made)

What the payer knows of each patient's coverage (`payer_view`) differs from the chart on purpose:
about 3 % of patients have no coverage, 7 % are inactive at the payer, 3 % unknown to it.
"""

from __future__ import annotations

import bisect
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone
from decimal import Decimal
from math import gcd
from typing import Any

from faker import Faker

from sandbox.table import Clock, Record, Table
from sandbox.wellsky.data import npi_with_check_digit

PRACTICE_CODE = "ecw-demo-practice"
PRACTICE_NAME = "Riverbend Community Health"
PRACTICE_TAX_ID = "043219876"  # the group's EIN (billing provider)
PRACTICE_NPI = npi_with_check_digit("150876543")  # the group's type 2 NPI
PRACTICE_PHONE = "5085550100"
STATE = "MA"
LOCAL_OFFSET = timedelta(hours=-5)
LOCAL_ZONE = timezone(LOCAL_OFFSET)  # the practice's clock (no daylight saving in the sandbox)
TIME_ZONE_NAME = "America/New_York"

WINDOW_DAYS = 28  # appointments span four weeks ...
PAST_DAYS = 14  # ... starting two weeks before today
APPOINTMENTS_PER_PATIENT = 3
PAST_SHARE = (5, 9)  # of each provider's appointments, those in the past two weeks
COMPLETED_SHARE = (9, 10)  # of the past ones, those checked out (the rest: no-show or cancelled)
TARGET_UTILIZATION = 0.65  # generated appointments fill at most this share of template slots
PATIENTS_PER_PROVIDER = 90
PATIENTS_PER_FACILITY = 2000
RESOURCES = ("facilities", "providers", "patients", "appointments", "encounters")
PREFIXES = {"facilities": "FAC", "providers": "PRV", "patients": "PAT", "appointments": "APT", "encounters": "ENC"}

EDITIONS = ("primary_care", "behavioral_health")
VISIT_TYPES = {  # code: (name, edition)
    "NP": ("New patient visit", "primary_care"),
    "FU": ("Follow-up visit", "primary_care"),
    "PE": ("Annual physical", "primary_care"),
    "SICK": ("Same-day sick visit", "primary_care"),
    "BH-INT": ("Behavioral health intake", "behavioral_health"),
    "BH-IND": ("Individual psychotherapy", "behavioral_health"),
    "BH-FU": ("Therapy follow-up", "behavioral_health"),
}
BLOCK_VISIT_TYPES = {  # (edition, morning?) -> the visit types a template block allows
    ("primary_care", True): ("NP", "PE", "FU"),
    ("primary_care", False): ("FU", "SICK"),
    ("behavioral_health", True): ("BH-INT", "BH-IND"),
    ("behavioral_health", False): ("BH-IND", "BH-FU"),
}
MORNING = (8 * 60, 12 * 60)  # minutes after local midnight
AFTERNOON = (13 * 60, 17 * 60)
DAY_NAMES = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")

SPECIALTIES = {  # edition -> (credentials, specialty, NUCC taxonomy)
    "primary_care": (("MD", "Family Medicine", "207Q00000X"), ("DO", "Family Medicine", "207Q00000X"),
                     ("MD", "Internal Medicine", "207R00000X"), ("NP", "Family Nurse Practitioner", "363LF0000X"),
                     ("PA-C", "Physician Assistant", "363A00000X")),
    "behavioral_health": (("MD", "Psychiatry", "2084P0800X"), ("PsyD", "Clinical Psychology", "103TC0700X"),
                          ("PhD", "Clinical Psychology", "103TC0700X"), ("LICSW", "Clinical Social Worker", "1041C0700X"),
                          ("LMHC", "Mental Health Counselor", "101YM0800X")),
}

# (payer name, payer id, claim filing indicator SBR09, member id prefix, plans: (name, copay, deductible))
PAYERS = (
    ("Medicare", "MCARE", "MB", "MB", (("Medicare Part B", None, Decimal("240.00")),)),
    ("MassHealth", "MHLTH", "MC", "MH", (("MassHealth Standard", Decimal("0.00"), Decimal("0.00")),)),
    ("Aetna", "60054", "CI", "W", (("Aetna Choice POS II", Decimal("25.00"), Decimal("1000.00")),
                                    ("Aetna Open Access HMO", Decimal("20.00"), Decimal("500.00")))),
    ("UnitedHealthcare", "87726", "CI", "U", (("UHC Choice Plus", Decimal("30.00"), Decimal("1500.00")),)),
    ("Blue Cross Blue Shield of Massachusetts", "BCBSM", "BL", "XHB", (("Blue Care Elect PPO", Decimal("25.00"), Decimal("750.00")),
                                                                        ("HMO Blue", Decimal("20.00"), Decimal("0.00")))),
    ("Harvard Pilgrim Health Care", "04271", "HM", "HP", (("HPHC HMO", Decimal("35.00"), Decimal("2000.00")),)),
)
MEMBER_MULTIPLIER = 387_420_489  # 3**18: coprime with 10**9, so member ids map back to patients
MEMBER_MODULUS = 10**9
COVERAGE_KINDS = ((3, "none"), (10, "inactive"), (13, "unknown"))  # cumulative percent -> kind; the rest "active"

PRIMARY_DIAGNOSES = {
    "I10": "Essential (primary) hypertension", "E11.9": "Type 2 diabetes mellitus without complications",
    "E78.5": "Hyperlipidemia, unspecified", "J06.9": "Acute upper respiratory infection, unspecified",
    "M54.50": "Low back pain, unspecified", "J45.909": "Unspecified asthma, uncomplicated", "E66.9": "Obesity, unspecified",
    "K21.9": "Gastro-esophageal reflux disease without esophagitis", "N39.0": "Urinary tract infection, site not specified",
    "R05.9": "Cough, unspecified", "Z00.00": "Encounter for general adult medical examination without abnormal findings",
}
CHRONIC = ("I10", "E11.9", "E78.5", "J45.909", "E66.9", "K21.9")
COMPLAINTS = {  # visit type -> (chief complaint, principal diagnosis)
    "SICK": (("Sore throat and congestion", "J06.9"), ("Cough for five days", "R05.9"), ("Low back pain", "M54.50"),
             ("Burning on urination", "N39.0")),
    "FU": (("Follow-up of hypertension", "I10"), ("Diabetes follow-up", "E11.9"), ("Cholesterol follow-up", "E78.5"),
           ("Asthma follow-up", "J45.909"), ("Heartburn follow-up", "K21.9")),
    "NP": (("Establish care", "I10"), ("Establish care", "E66.9"), ("Establish care", "E78.5")),
    "PE": (("Annual physical", "Z00.00"),),
}
BEHAVIORAL_DIAGNOSES = {
    "F32.1": "Major depressive disorder, single episode, moderate", "F33.1": "Major depressive disorder, recurrent, moderate",
    "F41.1": "Generalized anxiety disorder", "F43.10": "Post-traumatic stress disorder, unspecified",
    "F43.23": "Adjustment disorder with mixed anxiety and depressed mood",
    "F90.0": "Attention-deficit hyperactivity disorder, predominantly inattentive type", "F41.0": "Panic disorder",
}
CPT = {  # code: (description, charge in dollars)
    "99203": ("Office visit, new patient, low complexity", Decimal("150.00")),
    "99204": ("Office visit, new patient, moderate complexity", Decimal("225.00")),
    "99212": ("Office visit, established patient, straightforward", Decimal("75.00")),
    "99213": ("Office visit, established patient, low complexity", Decimal("110.00")),
    "99214": ("Office visit, established patient, moderate complexity", Decimal("165.00")),
    "99395": ("Preventive visit, established patient, 18-39 years", Decimal("190.00")),
    "99396": ("Preventive visit, established patient, 40-64 years", Decimal("205.00")),
    "99397": ("Preventive visit, established patient, 65 years and older", Decimal("220.00")),
    "36415": ("Routine venipuncture", Decimal("15.00")),
    "81002": ("Urinalysis, non-automated, without microscopy", Decimal("12.00")),
    "90686": ("Influenza vaccine, quadrivalent, preservative free", Decimal("35.00")),
    "90471": ("Immunization administration", Decimal("25.00")),
    "90832": ("Psychotherapy, 30 minutes", Decimal("85.00")),
    "90834": ("Psychotherapy, 45 minutes", Decimal("120.00")),
    "90837": ("Psychotherapy, 60 minutes", Decimal("165.00")),
}
PSYCHOTHERAPY_MINUTES = {"90832": (16, 37), "90834": (38, 52), "90837": (53, 60)}  # CPT time rules
AMENDMENT_REASONS = {
    "LATE_ENTRY": "Late entry", "CORRECTION": "Correction of an error", "CLARIFICATION": "Clarification",
    "PATIENT_REQUEST": "Amendment requested by the patient",
}
LANGUAGES = ("English",) * 8 + ("Spanish", "Spanish", "Portuguese", "Haitian Creole", "Vietnamese")
APPOINTMENT_STATUSES = ("scheduled", "confirmed", "checked_out", "no_show", "cancelled")
NOTE_STATUSES = ("draft", "signed", "locked")
SUNOH = "Sunoh.ai"

_MASK = (1 << 64) - 1


def mix(seed: int, value: int) -> int:
    """A cheap, well-spread 64-bit hash of two integers (splitmix64), for per-record coin flips."""
    x = (seed * 0x9E3779B97F4A7C15 + value * 0xBF58476D1CE4E5B9 + 0x94D049BB133111EB) & _MASK
    x ^= x >> 30
    x = (x * 0xBF58476D1CE4E5B9) & _MASK
    x ^= x >> 27
    x = (x * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def hhmm(minutes: int) -> str:
    return f"{minutes // 60:02d}:{minutes % 60:02d}"


def minutes_of(text: str) -> int:
    """"HH:MM" -> minutes after midnight (ValueError when it is not that)."""
    hours, _, mins = text.partition(":")
    if len(hours) != 2 or len(mins) != 2 or not (hours + mins).isdigit():
        raise ValueError(f"{text!r} is not HH:MM")
    return int(hours) * 60 + int(mins)


def phq9_severity(score: int) -> str:
    return "minimal" if score < 5 else "mild" if score < 10 else "moderate" if score < 15 else "moderately severe" if score < 20 else "severe"


def gad7_severity(score: int) -> str:
    return "minimal" if score < 5 else "mild" if score < 10 else "moderate" if score < 15 else "severe"


@dataclass(frozen=True)
class Block:
    """One block of a provider's weekly template: where, when, how long a slot is, which visit types."""

    weekday: int  # ISO: 1 Monday … 7 Sunday
    start: int  # minutes after local midnight
    end: int
    slot_minutes: int
    facility: int  # facility index
    visit_types: tuple[str, ...]

    @property
    def slots(self) -> int:
        return (self.end - self.start) // self.slot_minutes


@dataclass
class Plan:
    """A generated provider's template and the share of the generated appointments it holds.

    A provider's slots over the four-week window are numbered week by week (`weekly` per 7 days
    from the window's first day, in `layout` order). Its appointments are the indices
    `first … first + quota - 1`: the first `past` sit in the two past weeks and the rest in the two
    weeks to come, each half spread over its slots by an affine permutation (a k + b mod n) that
    is inverted to find which appointment holds a slot. Of the past ones, the first `completed`
    were checked out and have encounters `first_encounter …`.
    """

    edition: str
    blocks: tuple[Block, ...]
    layout: tuple[tuple[int, int], ...]  # (day offset from the window's first day, 0–6; block position)
    prefix: tuple[int, ...]  # slots before each layout entry
    weekly: int
    telehealth: bool
    sunoh: bool
    past_permutation: tuple[int, int, int]  # a, b, a⁻¹ mod 2·weekly
    future_permutation: tuple[int, int, int]
    first: int = 0
    quota: int = 0
    past: int = 0
    completed: int = 0
    first_encounter: int = 0


def _permutation(rng: random.Random, n: int) -> tuple[int, int, int]:
    if n <= 1:
        return 1, 0, 1
    a = rng.randrange(1, n)
    while gcd(a, n) != 1:
        a = a % (n - 1) + 1
    return a, rng.randrange(n), pow(a, -1, n)


@dataclass(frozen=True)
class Pools:
    first_female: tuple[str, ...]
    first_male: tuple[str, ...]
    last: tuple[str, ...]
    streets: tuple[str, ...]
    cities: tuple[tuple[str, str, str], ...]  # (city, state, zip)

    @classmethod
    def build(cls, seed: int) -> Pools:
        fake = Faker("en_US")
        fake.seed_instance(seed)
        return cls(
            first_female=tuple(fake.first_name_female() for _ in range(300)),
            first_male=tuple(fake.first_name_male() for _ in range(300)),
            last=tuple(fake.last_name() for _ in range(600)),
            streets=tuple(fake.street_address() for _ in range(800)),
            cities=tuple((fake.city(), STATE, fake.postcode_in_state(STATE)) for _ in range(40)),
        )


class Practice:
    """The records of one simulated eClinicalWorks practice, as tables (see sandbox.table)."""

    def __init__(self, *, seed: int = 1, scale: int = 120, today: date | None = None, clock: Clock | None = None):
        if scale < 4:
            raise ValueError("scale must be at least 4 patients")
        self.seed = seed
        self.scale = scale
        self.generated_at = datetime.now(UTC)
        self.today = today or (self.generated_at + LOCAL_OFFSET).date()
        # Generated records were last modified at as_of + index ms, and nothing in them is later
        # (a moment that follows from `today` alone, so the same seed and day give the same records).
        self.as_of = datetime.combine(self.today, time(0), tzinfo=LOCAL_ZONE).astimezone(UTC) - timedelta(minutes=10)
        self.window_start = self.today - timedelta(days=PAST_DAYS)
        self.pools = Pools.build(seed)
        self.clock = clock or Clock()
        s = scale
        facilities = max(2, s // PATIENTS_PER_FACILITY)
        self.sizes = {"facilities": facilities, "patients": s, "appointments": s * APPOINTMENTS_PER_PATIENT}
        self.plans = self._plan_providers(max(4, s // PATIENTS_PER_PROVIDER))
        self.sizes["providers"] = len(self.plans)
        self.sizes["encounters"] = self.plans[-1].first_encounter + self.plans[-1].completed
        self._first_appointment = [plan.first for plan in self.plans]
        self._first_encounter = [plan.first_encounter for plan in self.plans]
        self._telehealth_base: list[int] | None = None
        make = {"facilities": self._facility, "providers": self._provider, "patients": self._patient,
                "appointments": self._appointment, "encounters": self._encounter}
        self.tables = {name: Table(name, PREFIXES[name], self.sizes[name], make[name], clock=self.clock, base_epoch=self.as_of)
                       for name in RESOURCES}
        self.booked: dict[int, list[int]] = {}  # provider index -> appointments created since start (API or UI)
        self.references: dict[str, int] = {}  # client reference -> appointment index

    # --- helpers ----------------------------------------------------------------------------------
    def rng(self, resource: str, index: int, version: int = 0) -> random.Random:
        return random.Random(f"{self.seed}:{resource}:{index}:{version}")

    def table(self, name: str) -> Table:
        return self.tables[name]

    def ref(self, resource: str, index: int | None) -> str | None:
        return None if index is None else self.tables[resource].id_of(index)

    def index(self, resource: str, record_id: Any) -> int | None:
        """The index of a live record by its id (None when unknown or deleted)."""
        table = self.tables[resource]
        index = table.index_of(record_id) if isinstance(record_id, str) else None
        return None if index is None or index in table.deleted else index

    def record(self, resource: str, index: int | None) -> Record | None:
        """The live record as surfaces serve it (`modified` in place of the table's `updated_at`)."""
        record = self.tables[resource].get(index) if index is not None else None
        if record is None:
            return None
        record["modified"] = record.pop("updated_at")
        return record

    def get(self, resource: str, record_id: Any) -> Record | None:
        return self.record(resource, self.index(resource, record_id))

    def page(self, resource: str, page: int, page_size: int) -> tuple[list[Record], int]:
        """Live records in id order, offset paging: (the records of 1-based `page`, live total)."""
        table = self.tables[resource]
        with table.lock:
            deleted = sorted(table.deleted)
            count = table.count
        total = count - len(deleted)
        offset = (page - 1) * page_size
        if offset >= total:
            return [], total
        index = offset
        for gone in deleted:  # the offset-th live index: skip the deleted ones at or before it
            if gone > index:
                break
            index += 1
        out: list[Record] = []
        while len(out) < page_size and index < count:
            record = self.record(resource, index)
            if record is not None:
                out.append(record)
            index += 1
        return out, total

    def live_records(self, resource: str):
        """Every live record of a resource, in id order (lazily)."""
        table = self.tables[resource]
        for index in range(table.count):
            record = self.record(resource, index)
            if record is not None:
                yield record

    def _person(self, rng: random.Random, sex: str) -> tuple[str, str]:
        pools = self.pools
        return rng.choice(pools.first_female if sex == "F" else pools.first_male), rng.choice(pools.last)

    def _address(self, rng: random.Random) -> dict[str, str]:
        city, state, postal = rng.choice(self.pools.cities)
        return {"line1": rng.choice(self.pools.streets), "line2": "", "city": city, "state": state, "zip": postal}

    @staticmethod
    def _phone(rng: random.Random) -> str:
        return f"({rng.randint(339, 978)}) 555-{rng.randint(100, 9999):04d}"

    def local(self, day: date, minute: int) -> datetime:
        return datetime.combine(day, time(minute // 60, minute % 60), tzinfo=LOCAL_ZONE)

    def _stamp(self, moment: datetime) -> str:
        """A past moment in UTC, capped at `as_of` (when generated records were last modified)."""
        return min(moment.astimezone(UTC), self.as_of).strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- providers, templates and the slots appointments take ---------------------------------------
    def edition_of(self, provider: int) -> str:
        return "behavioral_health" if provider % 10 in (2, 5, 8) else "primary_care"

    def _plan_providers(self, count: int) -> list[Plan]:
        appointments = self.sizes["appointments"]
        plans = [self._plan(p) for p in range(count)]
        while appointments > TARGET_UTILIZATION * sum(4 * plan.weekly for plan in plans):
            plans.extend(self._plan(p) for p in range(len(plans), len(plans) + max(1, len(plans) // 10)))
        capacity = sum(4 * plan.weekly for plan in plans)
        before, encounters = 0, 0
        for plan in plans:
            plan.first = appointments * before // capacity
            before += 4 * plan.weekly
            plan.quota = appointments * before // capacity - plan.first
            plan.past = (plan.quota * PAST_SHARE[0] + PAST_SHARE[1] // 2) // PAST_SHARE[1]
            plan.completed = (plan.past * COMPLETED_SHARE[0] + COMPLETED_SHARE[1] // 2) // COMPLETED_SHARE[1]
            plan.first_encounter = encounters
            encounters += plan.completed
        return plans

    def _plan(self, provider: int) -> Plan:
        rng = self.rng("templates", provider)
        edition = self.edition_of(provider)
        facilities = self.sizes["facilities"]
        home = provider % facilities
        other = (home + 1 + rng.randrange(facilities - 1)) % facilities
        slot = rng.choice((15, 20, 20)) if edition == "primary_care" else rng.choice((30, 60, 60))
        away_day = rng.randint(1, 5)  # the weekday spent at a second site
        off_day = rng.choice((0, 0, 0, 5, 3))  # some work four days (0: none off)
        short_day = rng.choice((0, 5, 2))  # no afternoon that day
        blocks = []
        for weekday in range(1, 6):
            if weekday == off_day:
                continue
            facility = other if weekday == away_day else home
            blocks.append(Block(weekday, *MORNING, slot, facility, BLOCK_VISIT_TYPES[(edition, True)]))
            if weekday != short_day:
                blocks.append(Block(weekday, *AFTERNOON, slot, facility, BLOCK_VISIT_TYPES[(edition, False)]))
        layout = []
        for offset in range(7):
            weekday = (self.window_start + timedelta(days=offset)).isoweekday()
            layout.extend((offset, position) for position, block in enumerate(blocks) if block.weekday == weekday)
        prefix, total = [], 0
        for _, position in layout:
            prefix.append(total)
            total += blocks[position].slots
        telehealth = edition == "behavioral_health" or rng.random() < 0.6
        return Plan(edition=edition, blocks=tuple(blocks), layout=tuple(layout), prefix=tuple(prefix), weekly=total,
                    telehealth=telehealth, sunoh=rng.random() < 0.4, past_permutation=_permutation(rng, 2 * total),
                    future_permutation=_permutation(rng, 2 * total))

    def provider_of(self, appointment: int) -> int:
        """The generated provider holding a generated appointment."""
        return bisect.bisect_right(self._first_appointment, appointment) - 1

    def slot_of(self, plan: Plan, k: int) -> int:
        half = 2 * plan.weekly
        if k < plan.past:
            a, b, _ = plan.past_permutation
            return (a * k + b) % half
        a, b, _ = plan.future_permutation
        return half + (a * (k - plan.past) + b) % half

    def slot_time(self, plan: Plan, slot: int) -> tuple[date, Block, int]:
        """(day, block, start minute) of a provider's slot number."""
        week, rest = divmod(slot, plan.weekly)
        entry = bisect.bisect_right(plan.prefix, rest) - 1
        offset, position = plan.layout[entry]
        block = plan.blocks[position]
        return self.window_start + timedelta(days=7 * week + offset), block, block.start + (rest - plan.prefix[entry]) * block.slot_minutes

    def base_occupant(self, provider: int, day: date, minute: int) -> int | None:
        """The generated appointment holding the generated provider's slot that starts at (day, minute)."""
        if not 0 <= provider < len(self.plans):
            return None
        plan = self.plans[provider]
        offset = (day - self.window_start).days
        if not 0 <= offset < WINDOW_DAYS:
            return None
        week, day_offset = divmod(offset, 7)
        for entry, (entry_offset, position) in enumerate(plan.layout):
            block = plan.blocks[position]
            if entry_offset != day_offset or not block.start <= minute < block.end or (minute - block.start) % block.slot_minutes:
                continue
            slot = week * plan.weekly + plan.prefix[entry] + (minute - block.start) // block.slot_minutes
            half = 2 * plan.weekly
            if slot < half:
                _, b, inverse = plan.past_permutation
                k = inverse * (slot - b) % half
                return plan.first + k if k < plan.past else None
            _, b, inverse = plan.future_permutation
            k = inverse * (slot - half - b) % half
            return plan.first + plan.past + k if k < plan.quota - plan.past else None
        return None

    def is_telehealth(self, appointment: int, plan: Plan) -> bool:
        if not plan.telehealth:
            return False
        share = 40 if plan.edition == "behavioral_health" else 12
        return mix(self.seed ^ 0x7E1E, appointment) % 100 < share

    def telehealth_base(self) -> list[int]:
        """The generated appointments that are healow telehealth visits (computed once, on first use)."""
        if self._telehealth_base is None:
            found = []
            for plan in self.plans:
                if plan.telehealth:
                    found.extend(i for i in range(plan.first, plan.first + plan.quota) if self.is_telehealth(i, plan))
            self._telehealth_base = found
        return self._telehealth_base

    def encounter_of(self, appointment: int) -> int | None:
        if not 0 <= appointment < self.sizes["appointments"]:
            return None
        plan = self.plans[self.provider_of(appointment)]
        k = appointment - plan.first
        return plan.first_encounter + k if k < plan.completed else None

    def template_records(self, blocks: tuple[Block, ...]) -> list[dict[str, Any]]:
        return [{"facility_id": self.ref("facilities", b.facility), "weekday": b.weekday, "day": DAY_NAMES[b.weekday - 1],
                 "start": hhmm(b.start), "end": hhmm(b.end), "slot_minutes": b.slot_minutes, "visit_types": list(b.visit_types)}
                for b in blocks]

    # --- coverage: the chart's and the payer's ---------------------------------------------------------
    def coverage_kind(self, patient: int) -> str:
        """"none" (self-pay), "inactive" or "unknown" at the payer, or "active"."""
        roll = mix(self.seed ^ 0xC0FE, patient) % 100
        return next((kind for bound, kind in COVERAGE_KINDS if roll < bound), "active")

    def payer_of(self, patient: int) -> int:
        return mix(self.seed ^ 0xFA7E, patient) % len(PAYERS)

    def member_id_of(self, patient: int) -> str:
        encoded = (patient * MEMBER_MULTIPLIER + 7_000_003 + self.seed) % MEMBER_MODULUS
        return f"{PAYERS[self.payer_of(patient)][3]}{encoded:09d}"

    def patient_of_member(self, member_id: Any) -> int | None:
        """The patient a member id was issued to (None when no patient could hold it)."""
        if not isinstance(member_id, str):
            return None
        digits = member_id.lstrip("ABCDEFGHIJKLMNOPQRSTUVWXYZ")
        if len(digits) != 9 or not digits.isdigit():
            return None
        patient = (int(digits) - 7_000_003 - self.seed) * pow(MEMBER_MULTIPLIER, -1, MEMBER_MODULUS) % MEMBER_MODULUS
        return patient if patient < self.tables["patients"].count and self.member_id_of(patient) == member_id else None

    def coverage_for(self, patient: int) -> list[dict[str, Any]]:
        if self.coverage_kind(patient) == "none":
            return []
        name, payer_id, filing, _, plans = PAYERS[self.payer_of(patient)]
        rng = self.rng("coverage", patient)
        plan_name = plans[rng.randrange(len(plans))][0]
        effective = self.today - timedelta(days=rng.randrange(60, 1500))
        return [{"priority": 1, "payer_id": payer_id, "payer_name": name, "plan_name": plan_name, "member_id": self.member_id_of(patient),
                 "group_number": "" if filing in ("MB", "MC") else f"G{rng.randrange(10**6):06d}", "relationship": "self",
                 "claim_filing_indicator": filing, "effective_date": effective.isoformat(), "termination_date": None}]

    def payer_view(self, patient: int) -> dict[str, Any] | None:
        """What the patient's payer holds about the member: None when the payer does not know them.

        {payer_id, member_id, plan_name, active, copay, deductible (Decimal or None), coverage_start,
        coverage_end (date or None)}, from the chart's coverage of the patient as it is now.
        """
        kind = self.coverage_kind(patient)
        record = self.record("patients", patient) if patient < self.tables["patients"].count else None
        if kind in ("none", "unknown") or record is None or not record.get("coverage"):
            return None
        coverage = record["coverage"][0]
        plans = PAYERS[self.payer_of(patient)][4]
        _, copay, deductible = next((p for p in plans if p[0] == coverage["plan_name"]), plans[0])
        start = date.fromisoformat(coverage["effective_date"])
        end = None if kind == "active" else self.today - timedelta(days=1 + mix(self.seed, patient) % 90)
        return {"payer_id": coverage["payer_id"], "member_id": coverage["member_id"], "plan_name": coverage["plan_name"],
                "active": kind == "active", "copay": copay, "deductible": deductible, "coverage_start": min(start, end) if end else start,
                "coverage_end": end, "first_name": record["first_name"], "last_name": record["last_name"],
                "birth_date": date.fromisoformat(record["date_of_birth"])}

    def birth_date_of(self, patient: int) -> date:
        days = mix(self.seed ^ 0xB1D, patient) % (365 * 72)
        return self.today - timedelta(days=365 * 18 + days)

    # --- generators: (index, version) -> fields ----------------------------------------------------------
    def _facility(self, index: int, version: int) -> Record:
        rng = self.rng("facilities", index)
        address = self._address(rng)
        phone = self._phone(self.rng("facilities", index, version)) if version else self._phone(rng)
        return {"code": f"RB{index + 1:03d}", "name": f"{PRACTICE_NAME} – {address['city']} ({index + 1})", "practice_code": PRACTICE_CODE,
                "npi": npi_with_check_digit(f"15{(index * 7907 + self.seed) % 10**7:07d}"), "tax_id": PRACTICE_TAX_ID,
                "place_of_service": "11", "phone": phone, "address": address, "time_zone": TIME_ZONE_NAME, "utc_offset": "-05:00",
                "active": True}

    def _provider(self, index: int, version: int) -> Record:
        plan = self.plans[index]
        rng = self.rng("providers", index)
        credentials, specialty, taxonomy = rng.choice(SPECIALTIES[plan.edition])
        first, last = self._person(rng, rng.choice("FFM"))
        phone = self._phone(self.rng("providers", index, version)) if version else self._phone(rng)
        facilities = sorted({b.facility for b in plan.blocks})
        home = index % self.sizes["facilities"]
        email = f"{first[0]}{last}{index}@riverbend.example".lower().replace(" ", "").replace("'", "")
        return {"npi": npi_with_check_digit(f"1{(index * 7919 + 3957 + self.seed) % 10**8:08d}"), "first_name": first, "last_name": last,
                "credentials": credentials, "specialty": specialty, "taxonomy_code": taxonomy, "edition": plan.edition,
                "home_facility_id": self.ref("facilities", home), "facility_ids": [self.ref("facilities", f) for f in facilities],
                "templates": self.template_records(plan.blocks), "telehealth_enabled": plan.telehealth, "sunoh_enabled": plan.sunoh,
                "phone": phone, "email": email, "status": "active"}

    def _patient(self, index: int, version: int) -> Record:
        rng = self.rng("patients", index)
        roll = rng.random()
        sex = "U" if roll < 0.01 else "F" if roll < 0.53 else "M"
        first, last = self._person(rng, "F" if sex == "U" else sex)
        address, phone = self._address(rng), self._phone(rng)
        if version:  # a change at the front desk: the patient moved, or gave a new number
            changed = self.rng("patients", index, version)
            address, phone = self._address(changed), self._phone(changed)
        appointments = [a for a in (index, index + self.scale, index + 2 * self.scale) if a < self.sizes["appointments"]]
        providers = [self.provider_of(a) for a in appointments]
        sites = []
        for appointment, provider in zip(appointments, providers, strict=True):
            plan = self.plans[provider]
            _, block, _ = self.slot_time(plan, self.slot_of(plan, appointment - plan.first))
            if block.facility not in sites:
                sites.append(block.facility)
        primary = next((p for p in providers if self.plans[p].edition == "primary_care"), providers[0] if providers else None)
        mrn, account = f"RB{200000 + index}", f"{10_000_000 + index * 7 % 10_000_000:08d}"
        coverage = self.coverage_for(index)
        identifiers = [{"type": "MRN", "value": mrn}, {"type": "ACCOUNT", "value": account}]
        if coverage and coverage[0]["claim_filing_indicator"] == "MC":
            identifiers.append({"type": "MEDICAID", "value": coverage[0]["member_id"]})
        return {
            "mrn": mrn, "account_number": account, "first_name": first, "middle_name": rng.choice(("", "", "", "A", "J", "M")),
            "last_name": last, "date_of_birth": self.birth_date_of(index).isoformat(), "sex": sex, "language": rng.choice(LANGUAGES),
            "phone": phone, "email": f"{first}.{last}{index}@example.com".lower().replace(" ", "").replace("'", ""), "address": address,
            "home_facility_id": self.ref("facilities", sites[0] if sites else index % self.sizes["facilities"]),
            "facility_ids": [self.ref("facilities", f) for f in sites], "primary_provider_id": self.ref("providers", primary),
            "identifiers": identifiers, "coverage": coverage, "financial_class": "insurance" if coverage else "self_pay",
            "portal_enrolled": rng.random() < 0.6, "status": "active",
        }

    def _appointment(self, index: int, version: int) -> Record:
        provider = self.provider_of(index)
        plan = self.plans[provider]
        k = index - plan.first
        day, block, minute = self.slot_time(plan, self.slot_of(plan, k))
        rng = self.rng("appointments", index)
        telehealth = self.is_telehealth(index, plan)
        # Physicals are examined in person; any other visit type the block allows may be a video visit.
        visit_type = rng.choice([t for t in block.visit_types if t != "PE"] if telehealth else block.visit_types)
        if k < plan.completed:
            status = "checked_out"
        elif k < plan.past:
            status = rng.choice(("no_show", "cancelled"))
        else:
            status = rng.choice(("scheduled", "scheduled", "confirmed"))
        comment = ""
        if version:  # a change at the front desk: confirmed by phone, then cancelled by the patient
            if status in ("scheduled", "confirmed"):
                status = "confirmed" if version == 1 else "cancelled"
            comment = f"Updated at the front desk (revision {version})"
        start = self.local(day, minute)
        meeting = f"HLW{mix(self.seed, index) % 10**10:010d}"
        complaints = COMPLAINTS.get(visit_type)
        reason = rng.choice(complaints)[0] if complaints else VISIT_TYPES[visit_type][0]
        encounter = plan.first_encounter + k if k < plan.completed else None
        return {
            "patient_id": self.ref("patients", index % self.scale), "provider_id": self.ref("providers", provider),
            "facility_id": self.ref("facilities", block.facility), "start": start.isoformat(),
            "end": (start + timedelta(minutes=block.slot_minutes)).isoformat(), "duration_minutes": block.slot_minutes,
            "visit_type": visit_type, "visit_type_name": VISIT_TYPES[visit_type][0], "telehealth": telehealth,
            "visit_mode": "telehealth" if telehealth else "in_person",
            "healow": {"meeting_id": meeting, "join_url": f"https://healow.example/tv/{meeting}"} if telehealth else None,
            "status": status, "reason": reason, "comment": comment, "reference": None,
            "booked_via": "healow" if telehealth and rng.random() < 0.5 else "front_desk", "encounter_id": self.ref("encounters", encounter),
        }

    def _encounter(self, index: int, version: int) -> Record:
        provider = bisect.bisect_right(self._first_encounter, index) - 1
        plan = self.plans[provider]
        appointment_index = plan.first + index - plan.first_encounter
        appointment = self._appointment(appointment_index, 0)
        patient = appointment_index % self.scale
        rng = self.rng("encounters", index)
        start, end = datetime.fromisoformat(appointment["start"]), datetime.fromisoformat(appointment["end"])
        telehealth = appointment["telehealth"]
        record: Record = {
            "appointment_id": self.ref("appointments", appointment_index), "patient_id": appointment["patient_id"],
            "provider_id": appointment["provider_id"], "facility_id": appointment["facility_id"], "edition": plan.edition,
            "date": start.date().isoformat(), "start": appointment["start"], "end": appointment["end"],
            "visit_type": appointment["visit_type"], "telehealth": telehealth, "place_of_service": "10" if telehealth else "11",
        }
        if plan.edition == "primary_care":
            summary = self._primary_care(record, rng, patient, start)
        else:
            summary = self._behavioral_health(record, rng, appointment["duration_minutes"])
        record["progress_note"] = self._note(index, version, rng, plan, appointment["provider_id"], end, summary)
        return record

    def _primary_care(self, record: Record, rng: random.Random, patient: int, start: datetime) -> str:
        visit_type = record["visit_type"]
        complaint, principal = rng.choice(COMPLAINTS[visit_type])
        codes = [principal] + [c for c in rng.sample(CHRONIC, rng.randint(0, 2)) if c != principal]
        record["chief_complaint"] = complaint
        record["diagnoses"] = [{"rank": rank, "system": "ICD-10-CM", "code": code, "description": PRIMARY_DIAGNOSES[code]}
                               for rank, code in enumerate(codes, 1)]
        if record["telehealth"]:
            record["vitals"] = None
        else:
            height, weight = rng.randint(60, 76), rng.randint(110, 260)
            record["vitals"] = {"height_in": height, "weight_lb": weight, "bmi": round(703 * weight / height**2, 1),
                                "bp_systolic": rng.randint(104, 162), "bp_diastolic": rng.randint(62, 98), "pulse": rng.randint(56, 104),
                                "resp_rate": rng.randint(12, 20), "temp_f": round(rng.uniform(97.4, 99.6), 1), "spo2": rng.randint(93, 100),
                                "taken_at": self._stamp(start + timedelta(minutes=5))}
        age = (start.date() - self.birth_date_of(patient)).days // 365
        if visit_type == "PE":
            main = "99395" if age < 40 else "99396" if age < 65 else "99397"
        else:
            main = {"NP": rng.choice(("99203", "99204")), "FU": rng.choice(("99213", "99213", "99214")),
                    "SICK": rng.choice(("99212", "99213"))}[visit_type]
        extra = []
        if not record["telehealth"]:
            if principal == "N39.0":
                extra.append("81002")
            if visit_type == "PE" or (principal == "E11.9" and rng.random() < 0.5):
                extra.append("36415")
            if rng.random() < 0.08:
                extra += ["90686", "90471"]
        modifiers = ["95"] if record["telehealth"] else []
        record["procedures"] = [{"code": code, "system": "CPT", "description": CPT[code][0], "units": 1,
                                 "modifiers": modifiers if code == main else [], "charge": str(CPT[code][1]), "diagnosis_pointers": [1]}
                                for code in [main, *extra]]
        vitals = record["vitals"]
        objective = f"BP {vitals['bp_systolic']}/{vitals['bp_diastolic']}, HR {vitals['pulse']}" if vitals else "Video visit; no vitals taken"
        return (f"S: {complaint}. O: {objective}. A: {'; '.join(d['description'] for d in record['diagnoses'])}. "
                f"P: continue current plan; return as needed.")

    def _behavioral_health(self, record: Record, rng: random.Random, slot_minutes: int) -> str:
        visit_type = record["visit_type"]
        codes = rng.sample(tuple(BEHAVIORAL_DIAGNOSES), rng.randint(1, 2))
        record["diagnoses"] = [{"rank": rank, "system": "ICD-10-CM", "code": code, "description": BEHAVIORAL_DIAGNOSES[code]}
                               for rank, code in enumerate(codes, 1)]
        if slot_minutes <= 30:
            cpt = "90832"
        elif visit_type == "BH-INT":
            cpt = "90837"
        else:
            cpt = rng.choice(("90832", "90834", "90834", "90837") if visit_type == "BH-IND" else ("90832", "90832", "90834"))
        low, high = PSYCHOTHERAPY_MINUTES[cpt]
        phq9, gad7 = rng.randint(0, 27), rng.randint(0, 21)
        risk = rng.choice(("low", "moderate", "high")) if phq9 >= 20 else rng.choice(("none", "none", "low"))
        record["session_minutes"] = rng.randint(max(low, 25 if cpt == "90832" else low), high)
        record["psychotherapy_cpt"] = cpt
        record["psychotherapy_charge"] = str(CPT[cpt][1])
        record["assessments"] = {"phq9": {"score": phq9, "severity": phq9_severity(phq9)},
                                 "gad7": {"score": gad7, "severity": gad7_severity(gad7)}}
        record["risk_assessment"] = {"tool": "C-SSRS screener", "suicidal_ideation": risk in ("moderate", "high"), "suicide_risk": risk,
                                     "homicidal_ideation": False, "safety_plan_reviewed": risk in ("moderate", "high")}
        return (f"{VISIT_TYPES[visit_type][0]}, {record['session_minutes']} minutes. PHQ-9 {phq9} ({phq9_severity(phq9)}), "
                f"GAD-7 {gad7} ({gad7_severity(gad7)}). Suicide risk: {risk}. Plan: continue weekly psychotherapy.")

    def _note(self, index: int, version: int, rng: random.Random, plan: Plan, author: str, visit_end: datetime, text: str) -> Record:
        roll = rng.random()
        ai = plan.sunoh and roll < 0.15
        if ai or roll < 0.22:
            status = "draft"
        elif roll < 0.5 or (self.today - visit_end.date()).days <= 2:  # recent visits are not locked yet
            status = "signed"
        else:
            status = "locked"
        created = visit_end + timedelta(minutes=rng.randint(1, 30))
        signed = created + timedelta(minutes=rng.randint(20, 600))
        locked = signed + timedelta(hours=rng.randint(2, 30))
        note: Record = {
            "note_id": f"PN{index:07d}", "status": status, "source": "sunoh_ai" if ai else "provider", "ai_generated": ai,
            "ai_vendor": SUNOH if ai else None, "author_id": author, "created_at": self._stamp(created),
            "signed_at": None, "signed_by": None, "locked_at": None, "locked_by": None,
            "text": ("[Sunoh.ai draft, pending provider review] " if ai else "") + text, "amendments": [],
        }
        if status != "draft":
            note.update(signed_at=self._stamp(signed), signed_by=author)
        if status == "locked":
            note.update(locked_at=self._stamp(locked), locked_by=author)
        if status != "draft" and rng.random() < 0.1:
            for n in range(rng.choice((1, 1, 2))):
                at = self._stamp((locked if status == "locked" else signed) + timedelta(hours=4 + 20 * n))
                reason = rng.choice(tuple(AMENDMENT_REASONS))
                note["amendments"].append(amendment(note, reason, f"Addendum: {AMENDMENT_REASONS[reason].lower()}.", at, author))
        for _ in range(version):  # changes in the chart: a draft is signed, a signed note locked, a locked one amended
            progress_note(note, author, self.generated_at.strftime("%Y-%m-%dT%H:%M:%SZ"))
        return note


def amendment(note: Record, reason_code: str, text: str, at: str, by: str) -> Record:
    """A new amendment of a signed or locked note (re-signed at once, as eClinicalWorks requires)."""
    return {"amendment_id": f"{note['note_id']}-A{len(note['amendments']) + 1}", "reason_code": reason_code,
            "reason": AMENDMENT_REASONS[reason_code], "text": text, "amended_at": at, "amended_by": by, "signed_at": at}


def progress_note(note: Record, by: str, at: str) -> None:
    """One step of a note's life: sign a draft, lock a signed note, amend a locked one (in place)."""
    if note["status"] == "draft":
        note.update(status="signed", signed_at=at, signed_by=by)
    elif note["status"] == "signed":
        note.update(status="locked", locked_at=at, locked_by=by)
    else:
        note["amendments"].append(amendment(note, "CLARIFICATION", "Addendum: clarification after review.", at, by))
