"""One Welkin tenant's records, generated lazily from the seed (sandbox.table).

Records are held in the API's own shape (camelCase, as Welkin v8 answers), so rendering is adding
`id` and `updatedAt`. A change made in the vendor's UI moves a record to its next version: the
person stays the same person (names, birth date, MRN come from the index alone), what staff edit
(phone, email, address, a visit's time and status, an answer) comes from (index, version).
"""

from __future__ import annotations

import random
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.table import Clock, Record, Table

FIRST = ("Allison", "Brian", "Carmen", "Dmitri", "Esther", "Farid", "Grace", "Hector", "Ines", "Jamal", "Keiko", "Luis", "Mara", "Nadia")
LAST = ("Nguyen", "Okafor", "Petrov", "Quinn", "Ramirez", "Silva", "Tanaka", "Ulrich", "Vasquez", "Walker", "Xu", "Young", "Zamora")
STREETS = ("Oak St", "Maple Ave", "Cedar Rd", "Pine Ln", "Elm Ct", "Birch Way")
CITIES = (("Austin", "TX", "78701"), ("Denver", "CO", "80202"), ("Portland", "OR", "97201"), ("Madison", "WI", "53703"))
LANGUAGES = ("ENGLISH", "ENGLISH", "ENGLISH", "SPANISH", "VIETNAMESE")
GENDERS = ("FEMALE", "MALE", "FEMALE", "MALE", "OTHER", "UNKNOWN")
ROLES = ("Coach", "Coach", "Nurse", "Care Manager")
EVENT_TYPES = ("VIDEO_CALL", "PHONE_CALL", "IN_PERSON")
EVENT_STATUSES = ("SCHEDULED", "SCHEDULED", "COMPLETED", "CANCELLED", "NO_SHOW")
ENCOUNTER_STATUSES = ("DRAFT", "OPEN", "ACTIVE", "FINALIZED", "FINALIZED")
ENCOUNTER_TYPES = ("Intake", "Follow-up", "Care coordination")
DISPOSITIONS = ("Resolved", "Follow-up needed", "Referred out")
PROGRAMS = (("Diabetes Prevention", "DPP"), ("Hypertension Coaching", "HTN"), ("Behavioral Health", "BH"))
FORMS = {  # form name -> its questions (answers 0–3; the score is their sum)
    "PHQ-9": ("Little interest or pleasure", "Feeling down", "Sleep trouble", "Tired", "Appetite", "Feeling bad about yourself",
              "Trouble concentrating", "Moving slowly", "Thoughts of self-harm"),
    "GAD-7": ("Nervous", "Cannot stop worrying", "Worrying too much", "Trouble relaxing", "Restless", "Irritable", "Afraid"),
}
GOALS = ("Walk 30 minutes a day", "Take medication daily", "Check blood pressure weekly", "Attend support group")
TABLE_PREFIXES = {"patients": "WPAT", "coaches": "WUSR", "calendar_events": "WCAL", "programs": "WPRG", "care_plans": "WCPL",
                  "assessments": "WASM", "encounters": "WENC"}


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class Tenant:
    """The records of one Welkin tenant's instance."""

    def __init__(self, *, seed: int, scale: int, name: str, instance: str):
        self.seed, self.scale, self.name, self.instance = seed, scale, name, instance
        self.sizes = {"patients": scale, "coaches": max(3, scale // 10), "calendar_events": scale * 2, "programs": len(PROGRAMS),
                      "care_plans": scale, "assessments": scale * 2, "encounters": scale * 2}
        self.clock = Clock()
        now = datetime.now(UTC).replace(microsecond=0)
        self.anchor = now.replace(hour=0, minute=0, second=0)  # "today", for visit times
        epoch = now - timedelta(days=30)
        generators = {"patients": self._patient, "coaches": self._coach, "calendar_events": self._event, "programs": self._program,
                      "care_plans": self._care_plan, "assessments": self._assessment, "encounters": self._encounter}
        self.tables = {name: Table(name, TABLE_PREFIXES[name], size, generators[name], clock=self.clock, base_epoch=epoch)
                       for name, size in self.sizes.items()}

    def table(self, name: str) -> Table:
        return self.tables[name]

    def _rng(self, table: str, index: int, version: int | None = None) -> random.Random:
        return random.Random(f"{self.seed}:{self.name}:{table}:{index}" + ("" if version is None else f":{version}"))

    def _ref(self, table: str, index: int) -> str:
        return self.tables[table].id_of(index) if table in self.tables else f"{TABLE_PREFIXES[table]}{index:07d}"

    def _coach_of(self, index: int) -> str:
        return self._ref("coaches", index % self.sizes["coaches"])

    # --- generators: (index, version) -> fields -----------------------------------------------------------
    def _patient(self, index: int, version: int) -> Record:
        fixed, edited = self._rng("patients", index), self._rng("patients", index, version)
        city, state, zip_code = fixed.choice(CITIES)
        first, last = fixed.choice(FIRST), fixed.choice(LAST)
        birth = date(1940, 1, 1) + timedelta(days=fixed.randrange(365 * 60))
        return {
            "firstName": first, "lastName": last, "middleName": fixed.choice(("", "A", "J", "M")), "birthDate": birth.isoformat(),
            "gender": fixed.choice(GENDERS), "primaryLanguage": fixed.choice(LANGUAGES), "mrn": f"WK{100000 + index}",
            "phone": f"+1555{edited.randrange(10**7):07d}", "email": f"{first.lower()}.{last.lower()}{index}@mail.example",
            "address": {"addressLine1": f"{edited.randrange(100, 9999)} {edited.choice(STREETS)}", "addressLine2": "", "city": city,
                        "state": state, "zip": zip_code, "country": "US"},
            "programIds": [self._ref("programs", index % len(PROGRAMS))], "primaryCoachId": self._coach_of(index), "status": "ACTIVE",
        }

    def _coach(self, index: int, version: int) -> Record:
        fixed, edited = self._rng("coaches", index), self._rng("coaches", index, version)
        first, last = fixed.choice(FIRST), fixed.choice(LAST)
        return {"firstName": first, "lastName": last, "email": f"{first.lower()}.{last.lower()}@care.example",
                "phone": f"+1555{edited.randrange(10**7):07d}", "role": fixed.choice(ROLES), "active": version % 5 != 4,
                "timezone": "America/Chicago"}

    def _program(self, index: int, version: int) -> Record:
        name, code = PROGRAMS[index % len(PROGRAMS)]
        return {"name": name, "code": code, "active": True}

    def _event(self, index: int, version: int) -> Record:
        fixed, edited = self._rng("calendar_events", index), self._rng("calendar_events", index, version)
        patients = self.sizes["patients"]
        start = self.anchor + timedelta(days=(index // patients) * 7 - 7 + fixed.randrange(3), hours=14 + fixed.randrange(6))
        start += timedelta(hours=version)  # a reschedule in the UI moves the visit
        minutes = fixed.choice((30, 45, 60))
        status = edited.choice(EVENT_STATUSES) if version else ("COMPLETED" if start < self.anchor else "SCHEDULED")
        return {"patientId": self._ref("patients", index % patients), "userId": self._coach_of(index), "eventType": fixed.choice(EVENT_TYPES),
                "title": fixed.choice(("Weekly check-in", "Care plan review", "Medication review")), "status": status,
                "start": _iso(start), "end": _iso(start + timedelta(minutes=minutes))}

    def _care_plan(self, index: int, version: int) -> Record:
        fixed, edited = self._rng("care_plans", index), self._rng("care_plans", index, version)
        program, _ = PROGRAMS[index % len(PROGRAMS)]
        start = self.anchor.date() - timedelta(days=30 + fixed.randrange(300))
        goals = [{"description": g, "target": "daily" if "daily" in g else "weekly", "status": edited.choice(("IN_PROGRESS", "ACHIEVED"))}
                 for g in fixed.sample(GOALS, 2)]
        return {"patientId": self._ref("patients", index % self.sizes["patients"]), "title": f"{program} plan",
                "status": "ACTIVE" if version % 4 != 3 else "COMPLETED", "startDate": start.isoformat(),
                "endDate": (start + timedelta(days=180)).isoformat(), "goals": goals,
                "interventions": [{"description": "Coach call", "status": "ACTIVE", "frequency": "weekly"}]}

    def _assessment(self, index: int, version: int) -> Record:
        fixed, edited = self._rng("assessments", index), self._rng("assessments", index, version)
        form = ("PHQ-9", "GAD-7")[index % 2]
        answers = [{"question": q, "answer": edited.randrange(4)} for q in FORMS[form]]
        completed = self.anchor - timedelta(days=fixed.randrange(60), hours=fixed.randrange(8))
        return {"patientId": self._ref("patients", index % self.sizes["patients"]), "formName": form, "status": "COMPLETED",
                "answers": answers, "score": sum(a["answer"] for a in answers), "completedAt": _iso(completed)}

    def _encounter(self, index: int, version: int) -> Record:
        fixed, edited = self._rng("encounters", index), self._rng("encounters", index, version)
        start = self.anchor - timedelta(days=fixed.randrange(45), hours=-14 - fixed.randrange(6))
        status = ENCOUNTER_STATUSES[(fixed.randrange(len(ENCOUNTER_STATUSES)) + version) % len(ENCOUNTER_STATUSES)]
        return {"patientId": self._ref("patients", index % self.sizes["patients"]), "userId": self._coach_of(index),
                "encounterType": fixed.choice(ENCOUNTER_TYPES), "title": fixed.choice(("Intake call", "Coaching session", "Check-in")),
                "status": status, "startTime": _iso(start), "endTime": _iso(start + timedelta(minutes=40)) if status == "FINALIZED" else None,
                "disposition": edited.choice(DISPOSITIONS) if status == "FINALIZED" else None,
                "comments": [{"text": "Discussed goals", "authorId": self._coach_of(index)}]}

    # --- what a UI user creates -------------------------------------------------------------------------
    def new_fields(self, rng: random.Random, resource: str) -> Record:
        """Fields for a record created in the vendor's UI: a base record's shape, for a live patient."""
        table = self.tables[resource]
        fields: dict[str, Any] = table.fields(rng.randrange(table.base_count))
        if resource == "patients":
            index = table.count
            fields.update(mrn=f"WK{100000 + index}", lastName=f"{fields['lastName']}-{index}")
        elif "patientId" in fields:
            fields["patientId"] = self._ref("patients", rng.randrange(self.sizes["patients"]))
        return fields
