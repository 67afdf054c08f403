"""A simulated home-care agency on WellSky: the records every WellSky surface serves.

Deterministic from the seed: Faker (seeded) fills the pools of names, streets and cities once;
each record is then built from a small PRNG seeded with (seed, resource, index, version), so the
same seed gives the same agency on every run and any record can be generated on its own.

Shape, for a scale of S patients: S/4 practitioners (caregivers and clinicians), a branch per
1,000 patients (at least two), 1.25 S authorizations (one active per patient for the service it
is billed under, plus an expired one for every fourth), 7.5 S appointments over four weeks
centred on today (the first four per patient in the past), 3.33 S finalized encounters (one per
past completed visit), S/2 care plans and S/10 referrals.
"""

from __future__ import annotations

import base64
import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from faker import Faker

from sandbox.table import Clock, Record, Table

AGENCY = "Sunrise Home Care"
TIME_ZONE_OFFSET = timedelta(hours=-5)  # the agency's visits are at local (US Eastern standard) times

PAYERS = (
    ("Medicare", "00430", "MA"),
    ("Ohio Medicaid", "MCDOH", "MC"),
    ("Aetna", "60054", "CI"),
    ("UnitedHealthcare", "87726", "CI"),
    ("Humana", "61101", "HM"),
    ("Anthem Blue Cross", "00265", "BL"),
)

# Service codes as the agency configured them in WellSky (local, not HCPCS: mapped by the hub).
SERVICES = {
    "PCS": {"name": "Personal care", "unit_type": "15min", "hcpcs": "T1019", "discipline": "HHA"},
    "HHA": {"name": "Home health aide", "unit_type": "hour", "hcpcs": "S9122", "discipline": "HHA"},
    "SN": {"name": "Skilled nursing visit", "unit_type": "visit", "hcpcs": "G0299", "discipline": "RN"},
    "PT": {"name": "Physical therapy visit", "unit_type": "visit", "hcpcs": "G0151", "discipline": "PT"},
    "RESP": {"name": "Respite care", "unit_type": "hour", "hcpcs": "T1005", "discipline": "HHA"},
}
SERVICE_CODES = tuple(SERVICES)

DISCIPLINES = (
    ("RN", "Nursing", ("Wound care", "Diabetes education")),
    ("LPN", "Nursing", ("Medication management",)),
    ("HHA", "Home health aide", ("Dementia care", "Hoyer lift")),
    ("PT", "Physical therapy", ("Fall prevention",)),
    ("OT", "Occupational therapy", ("ADL training",)),
)

DIAGNOSES = (
    ("I10", "Essential (primary) hypertension"),
    ("E11.9", "Type 2 diabetes mellitus without complications"),
    ("I50.9", "Heart failure, unspecified"),
    ("J44.9", "Chronic obstructive pulmonary disease, unspecified"),
    ("F03.90", "Unspecified dementia without behavioral disturbance"),
    ("M17.11", "Unilateral primary osteoarthritis, right knee"),
    ("G20", "Parkinson's disease"),
    ("N18.30", "Chronic kidney disease, stage 3 unspecified"),
    ("R26.89", "Other abnormalities of gait and mobility"),
    ("Z74.09", "Other reduced mobility"),
)

VITALS = (
    ("BP_SYSTOLIC", "8480-6", "Systolic blood pressure", "mm[Hg]", 105, 165),
    ("BP_DIASTOLIC", "8462-4", "Diastolic blood pressure", "mm[Hg]", 60, 98),
    ("PULSE", "8867-4", "Heart rate", "/min", 55, 105),
    ("SPO2", "2708-6", "Oxygen saturation", "%", 88, 100),
    ("TEMP", "8310-5", "Body temperature", "[degF]", 97, 100),
)

LANGUAGES = ("English",) * 7 + ("Spanish", "Spanish", "Vietnamese", "Russian", "Somali")
REFERRAL_SOURCES = ("St. Mary's Hospital", "Riverside Medical Center", "Dr. Patel Family Practice", "Area Agency on Aging",
                    "Lakeview Rehabilitation")
UNIT_CONSUMING = ("Scheduled", "Completed", "In Progress")  # appointment statuses that use authorization units
APPOINTMENTS_PER_PATIENT = 7.5
PAST_VISITS_PER_PATIENT = 4  # appointments k = 0..3 of each patient are in the past
VISIT_HOURS = range(7, 19)


def npi_with_check_digit(base9: str) -> str:
    """A National Provider Identifier: nine digits plus the Luhn check digit over '80840' + them."""
    digits = [int(d) for d in "80840" + base9]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2 == 0:
            digit *= 2
            digit = digit - 9 if digit > 9 else digit
        total += digit
    return base9 + str((10 - total % 10) % 10)


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
            cities=tuple((fake.city(), "OH", fake.postcode_in_state("OH")) for _ in range(40)),
        )


class Agency:
    """The records of one simulated WellSky agency, as tables (see sandbox.table)."""

    def __init__(self, *, seed: int = 1, scale: int = 120, today: date | None = None, clock: Clock | None = None):
        if scale < 4:
            raise ValueError("scale must be at least 4 patients")
        self.seed = seed
        self.scale = scale
        self.today = today or datetime.now(UTC).date()
        self.pools = Pools.build(seed)
        self.clock = clock or Clock()
        epoch = datetime.combine(self.today - timedelta(days=60), time(0), tzinfo=UTC)
        s = scale
        self.sizes = {
            "patients": s, "practitioners": max(3, s // 4), "locations": max(2, s // 1000),
            "authorizations": s + s // 4, "appointments": int(s * APPOINTMENTS_PER_PATIENT),
            "encounters": s * 10 // 3, "care-plans": max(1, s // 2), "referrals": max(2, s // 10),
        }
        make = {
            "patients": ("PT", self._patient), "practitioners": ("PR", self._practitioner), "locations": ("BR", self._location),
            "authorizations": ("AU", self._authorization), "appointments": ("AP", self._appointment),
            "encounters": ("EN", self._encounter), "care-plans": ("CP", self._care_plan), "referrals": ("RF", self._referral),
        }
        self.tables = {
            name: Table(name, prefix, self.sizes[name], generate, clock=self.clock, base_epoch=epoch)
            for name, (prefix, generate) in make.items()
        }
        # Appointments booked through the API, per authorization index (the base ones follow from the index).
        self.booked: dict[int, list[int]] = {}
        self._units_used: dict[int, float] = {}
        self._base_units_cache: dict[int, float] = {}  # both the authorization and its units-used figure need it

    # --- helpers ----------------------------------------------------------------------------------
    def rng(self, resource: str, index: int, version: int = 0) -> random.Random:
        return random.Random(f"{self.seed}:{resource}:{index}:{version}")

    def table(self, name: str) -> Table:
        return self.tables[name]

    def ref(self, resource: str, index: int | None) -> str | None:
        return None if index is None else self.tables[resource].id_of(index)

    def _person(self, rng: random.Random, sex: str) -> tuple[str, str]:
        pools = self.pools
        first = rng.choice(pools.first_female if sex == "F" else pools.first_male)
        return first, rng.choice(pools.last)

    def _address(self, rng: random.Random) -> dict[str, str]:
        city, state, postal = rng.choice(self.pools.cities)
        return {"line1": rng.choice(self.pools.streets), "line2": "", "city": city, "state": state, "zip": postal}

    @staticmethod
    def _phone(rng: random.Random) -> str:
        return f"({rng.randint(216, 989)}) 555-{rng.randint(100, 9999):04d}"

    def _local(self, day: date, hour: int, minute: int) -> datetime:
        return datetime.combine(day, time(hour, minute), tzinfo=UTC) - TIME_ZONE_OFFSET

    @staticmethod
    def _iso(moment: datetime) -> str:
        return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")

    # --- the relations between indices --------------------------------------------------------------
    def service_of_patient(self, patient: int) -> str:
        return SERVICE_CODES[random.Random(f"{self.seed}:svc:{patient}").randrange(len(SERVICE_CODES))]

    def payer_of(self, patient: int) -> int:
        return random.Random(f"{self.seed}:payer:{patient}").randrange(len(PAYERS))

    def practitioner_of(self, appointment: int) -> int:
        return (appointment * 7 + appointment // self.scale) % self.sizes["practitioners"]

    def appointment_slot(self, index: int) -> tuple[datetime, datetime]:
        """Where a base appointment falls: patient i % S, its k-th visit (k = i // S)."""
        rng = self.rng("appointments-slot", index)
        k = index // self.scale
        offset = -14 + k * 4 + rng.randrange(3) if k < PAST_VISITS_PER_PATIENT else 1 + (k - PAST_VISITS_PER_PATIENT) * 4 + rng.randrange(3)
        start = self._local(self.today + timedelta(days=offset), rng.choice(VISIT_HOURS), rng.choice((0, 30)))
        minutes = rng.choice((60, 90, 120))
        return start, start + timedelta(minutes=minutes)

    @staticmethod
    def units_for(service_code: str, start: datetime, end: datetime) -> float:
        minutes = (end - start).total_seconds() / 60
        unit_type = SERVICES.get(service_code, {}).get("unit_type", "visit")
        return minutes / 15 if unit_type == "15min" else minutes / 60 if unit_type == "hour" else 1.0

    def authorization_appointments(self, authorization: int) -> list[int]:
        """Appointments billed against an authorization: the patient's base visits, then any booked since."""
        base = list(range(authorization, self.sizes["appointments"], self.scale)) if authorization < self.scale else []
        return base + self.booked.get(authorization, [])

    def units_used(self, authorization: int) -> float:
        cached = self._units_used.get(authorization)
        if cached is not None:
            return cached
        appointments = self.tables["appointments"]
        visits = self.authorization_appointments(authorization)
        if authorization < self.scale and not self.booked.get(authorization) and not any(i in appointments.stamps for i in visits):
            used = self._base_units(authorization)  # no visit touched since start: the generated figure
        else:
            used = 0.0
            for index in visits:
                record = appointments.get(index)
                if record is not None and record["status"] in UNIT_CONSUMING:
                    used += float(record["units"])
        self._units_used[authorization] = used
        return used

    def forget_units(self, authorization: int | None) -> None:
        if authorization is not None:
            self._units_used.pop(authorization, None)

    # --- generators: (index, version) -> fields ---------------------------------------------------------
    def _patient(self, index: int, version: int) -> Record:
        rng = self.rng("patients", index)
        sex = rng.choice("FFFMM") if rng.random() > 0.01 else "U"
        first, last = self._person(rng, "F" if sex == "U" else sex)
        born = date(1926, 1, 1) + timedelta(days=rng.randrange(365 * 70))
        payer, payer_id, filing = PAYERS[self.payer_of(index)]
        coverage = [{"priority": 1, "payer_name": payer, "payer_id": payer_id, "member_id": f"{filing}{rng.randrange(10**9):09d}",
                     "plan_name": f"{payer} {rng.choice(('Standard', 'Advantage', 'Waiver'))}", "group_number": f"G{rng.randrange(10**5):05d}",
                     "effective_date": (self.today - timedelta(days=rng.randrange(30, 900))).isoformat(), "termination_date": None}]
        if rng.random() < 0.2:
            second, second_id, _ = PAYERS[(PAYERS.index((payer, payer_id, filing)) + 1) % len(PAYERS)]
            coverage.append({"priority": 2, "payer_name": second, "payer_id": second_id, "member_id": f"S{rng.randrange(10**8):08d}",
                             "plan_name": f"{second} Supplement", "group_number": "", "effective_date": coverage[0]["effective_date"],
                             "termination_date": None})
        address = self._address(rng)
        phone = self._phone(rng)
        if version:  # a change in the portal: the family moved, or gave a new number
            vr = self.rng("patients", index, version)
            address, phone = self._address(vr), self._phone(vr)
        identifiers = [{"type": "MRN", "value": f"WS{100000 + index}"}]
        if payer_id == "MCDOH":
            identifiers.append({"type": "MEDICAID", "value": coverage[0]["member_id"]})
        return {
            "mrn": f"WS{100000 + index}", "first_name": first, "middle_name": rng.choice(("", "", "A.", "M.", "J.")), "last_name": last,
            "date_of_birth": born.isoformat(), "gender": sex, "language": rng.choice(LANGUAGES), "phone": phone,
            "email": f"{first}.{last}{index}@example.com".lower().replace(" ", "").replace("'", ""),
            "address": address, "identifiers": identifiers, "coverage": coverage, "status": "Active",
            "branch_id": self.ref("locations", index % self.sizes["locations"]),
        }

    def _practitioner(self, index: int, version: int) -> Record:
        rng = self.rng("practitioners", index)
        credentials, discipline, specialties = DISCIPLINES[index % len(DISCIPLINES)]
        first, last = self._person(rng, rng.choice("FFFM"))
        phone = self._phone(self.rng("practitioners", index, version)) if version else self._phone(rng)
        return {
            "npi": npi_with_check_digit(f"1{(index * 7919 + self.seed) % 10**8:08d}"), "first_name": first, "last_name": last,
            "credentials": credentials, "discipline": discipline, "specialties": list(specialties), "phone": phone,
            "email": f"{first[0]}{last}{index}@sunrise.example".lower().replace(" ", "").replace("'", ""),
            "status": "Active" if rng.random() > 0.05 else "Inactive",
            "hire_date": (self.today - timedelta(days=rng.randrange(30, 3000))).isoformat(),
        }

    def _location(self, index: int, version: int) -> Record:
        rng = self.rng("locations", index, version)
        return {"name": f"{AGENCY} — Branch {index + 1}", "type": "branch", "phone": self._phone(rng), "address": self._address(rng),
                "active": True}

    def _authorization(self, index: int, version: int) -> Record:
        rng = self.rng("authorizations", index)
        s = self.scale
        patient = index % s
        payer, payer_id, _ = PAYERS[self.payer_of(patient)]
        if index < s:  # the active authorization the patient's visits are billed under
            service = self.service_of_patient(patient)
            booked = self._base_units(index)
            units_allowed = booked + rng.choice((0, 0, 1, 4, 8, 12, 24)) * (1 if SERVICES[service]["unit_type"] == "visit" else 4)
            start, end = self.today - timedelta(days=30), self.today + timedelta(days=60)
            status = "Active"
        else:  # an expired one, from an earlier period
            service = SERVICE_CODES[(SERVICE_CODES.index(self.service_of_patient(patient)) + 1) % len(SERVICE_CODES)]
            units_allowed = rng.choice((12, 24, 48))
            start, end = self.today - timedelta(days=200), self.today - timedelta(days=31)
            status = "Expired"
        units_allowed += 4 * version  # a change: the payer extended the authorization
        return {
            "patient_id": self.ref("patients", patient), "payer_name": payer, "payer_id": payer_id,
            "auth_number": f"PA{self.seed % 100:02d}{index:08d}", "service_codes": [service], "units_allowed": units_allowed,
            "units_used": None, "unit_type": SERVICES[service]["unit_type"], "start_date": start.isoformat(),
            "end_date": end.isoformat(), "status": status,
        }

    def _base_units(self, authorization: int) -> float:
        """Units the generated visits of a patient's active authorization use (before any change)."""
        cached = self._base_units_cache.get(authorization)
        if cached is None:
            cached = self._base_units_cache[authorization] = self._count_base_units(authorization)
        return cached

    def _count_base_units(self, authorization: int) -> float:
        service = self.service_of_patient(authorization)
        total = 0.0
        for index in range(authorization, self.sizes["appointments"], self.scale):
            if self.base_status(index) in UNIT_CONSUMING:
                start, end = self.appointment_slot(index)
                total += self.units_for(service, start, end)
        return total

    def base_status(self, index: int) -> str:
        """A generated appointment's status, without building the record."""
        if index // self.scale >= PAST_VISITS_PER_PATIENT:
            return "Scheduled"
        if index < self.sizes["encounters"]:
            return "Completed"
        return self.rng("appointments", index).choice(("Completed", "Cancelled", "Missed"))

    def _appointment(self, index: int, version: int) -> Record:
        patient = index % self.scale
        start, end = self.appointment_slot(index)
        service = self.service_of_patient(patient)
        status = self.base_status(index)
        notes = ""
        if version:  # a change: the office moved a future visit by half an hour (same length, same units)
            if status == "Scheduled":
                start, end = start + timedelta(minutes=30 * version), end + timedelta(minutes=30 * version)
            notes = f"Updated by the office (revision {version})"
        return {
            "patient_id": self.ref("patients", patient), "practitioner_id": self.ref("practitioners", self.practitioner_of(index)),
            "location_id": self.ref("locations", patient % self.sizes["locations"]), "authorization_id": self.ref("authorizations", patient),
            "service_code": service, "start": self._iso(start), "end": self._iso(end), "units": self.units_for(service, start, end),
            "status": status, "visit_type": "HOME", "notes": notes,
        }

    def _encounter(self, index: int, version: int) -> Record:
        rng = self.rng("encounters", index)
        appointment = self._appointment(index, 0)  # encounter j documents appointment j
        start, end = self.appointment_slot(index)
        service = appointment["service_code"]
        diagnoses = [{"rank": rank + 1, "system": "ICD-10-CM", "code": code, "description": text}
                     for rank, (code, text) in enumerate(rng.sample(DIAGNOSES, rng.randint(1, 3)))]
        procedures = [{"code": service, "modifiers": ["U1"] if service in ("PCS", "HHA") else [], "units": appointment["units"],
                       "description": SERVICES[service]["name"]}]
        taken = self._iso(start + timedelta(minutes=10))
        vitals = [{"type": kind, "loinc": loinc, "description": text, "value": str(rng.randint(low, high)), "unit": unit, "taken_at": taken}
                  for kind, loinc, text, unit, low, high in VITALS if rng.random() < 0.8]
        practitioner = appointment["practitioner_id"]
        note = {"author_id": practitioner, "summary": f"{SERVICES[service]['name']} provided as planned. Client tolerated the visit well.",
                "status": "Signed", "signed_at": self._iso(end + timedelta(minutes=rng.randint(5, 240))), "locked": True, "amendments": []}
        if version:  # a change: the clinician amended the note after it was signed
            note["status"] = "Amended"
            note["amendments"] = [{"reason": "Late entry", "text": f"Addendum {version}: family education reinforced.",
                                   "at": self._iso(end + timedelta(days=1))}]
        return {
            "appointment_id": self.ref("appointments", index), "patient_id": appointment["patient_id"], "practitioner_id": practitioner,
            "location_id": appointment["location_id"], "status": "Finalized", "visit_type": "HOME",
            "visit_start": self._iso(start), "visit_end": self._iso(end), "diagnoses": diagnoses, "procedures": procedures,
            "vitals": vitals, "note": note,
        }

    def _care_plan(self, index: int, version: int) -> Record:
        rng = self.rng("care-plans", index)
        patient = (index * 2) % self.scale
        goal_status = "Achieved" if version else rng.choice(("In Progress", "In Progress", "Not Started"))
        return {
            "patient_id": self.ref("patients", patient), "title": "Plan of care", "status": "Active",
            "start_date": (self.today - timedelta(days=rng.randrange(10, 120))).isoformat(),
            "end_date": (self.today + timedelta(days=rng.randrange(30, 120))).isoformat(),
            "goals": [{"description": rng.choice(("Remain safely at home", "Reduce fall risk", "Manage medications independently")),
                       "target": "90 days", "status": goal_status}],
            "interventions": [{"description": SERVICES[self.service_of_patient(patient)]["name"], "frequency": rng.choice(("3x weekly", "daily", "2x weekly")),
                               "status": "Active"}],
            "outcomes": [],
        }

    def _referral(self, index: int, version: int) -> Record:
        rng = self.rng("referrals", index)
        patient = (index * 10) % self.scale
        return {
            "patient_id": self.ref("patients", patient), "referral_source": rng.choice(REFERRAL_SOURCES),
            "reason": rng.choice(("Post-discharge support", "Assistance with ADLs", "Wound care after surgery", "Caregiver respite")),
            "priority": rng.choice(("Routine", "Routine", "Urgent")), "service_code": self.service_of_patient(patient),
            "status": rng.choice(("Accepted", "Accepted", "Declined")),
            "received_at": self._iso(self._local(self.today - timedelta(days=rng.randrange(20, 90)), 10, 0)), "decided_at": None,
        }


def totp_secret_for(seed: int, username: str) -> str:
    """A stable base32 TOTP secret (160 bits) for a sandbox account."""
    return base64.b32encode(hashlib.sha256(f"{seed}:{username}:totp".encode()).digest()[:20]).decode()

