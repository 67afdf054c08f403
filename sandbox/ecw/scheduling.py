"""Booking against provider templates: the rules `create_appointment` enforces, and free slots.

A booking must fall inside one block of the provider's weekly template at the facility asked for
(weekday, start and end), start on the block's slot grid and last a whole number of slots, be of a
visit type the block allows, start in the future (at most `MAX_DAYS_AHEAD` days out), and overlap
no live appointment of the provider that is not cancelled. Each refusal raises the portal's error
(see errors.py) with what the client needs to correct the request.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.ecw.data import LOCAL_ZONE, VISIT_TYPES, Practice, minutes_of, mix
from sandbox.ecw.errors import refuse
from sandbox.table import Record

MAX_DAYS_AHEAD = 180  # how far ahead the schedule is open
MAX_DURATION_MINUTES = 240
MAX_REFERENCE_LENGTH = 100
FREE = ("cancelled",)  # statuses that leave the slot free


@dataclass
class Booking:
    """A parsed create_appointment request (indices are live records)."""

    patient: int
    provider: int
    facility: int
    start: datetime  # aware, in the practice's zone
    duration: int | None  # minutes; None: one slot of the block
    visit_type: str
    telehealth: bool
    reference: str | None
    reason: str
    booked_via: str


def parse_booking(practice: Practice, body: Any, *, booked_via: str, telehealth: bool | None = None) -> dict[str, Any]:
    """The request's fields, type-checked (106 naming every bad field); records are looked up later."""
    if not isinstance(body, dict):
        raise refuse(106, "the body must be a JSON object")
    errors: list[dict[str, str]] = []

    def text(name: str, *, required: bool, limit: int = 40) -> str | None:
        value = body.get(name)
        if value is None or value == "":
            if required:
                errors.append({"field": name, "message": "is required"})
            return None
        if not isinstance(value, str) or len(value) > limit:
            errors.append({"field": name, "message": f"must be text of at most {limit} characters"})
            return None
        return value

    fields: dict[str, Any] = {name: text(name, required=True) for name in ("patient_id", "provider_id", "facility_id", "visit_type")}
    fields["reference"] = text("reference", required=False, limit=MAX_REFERENCE_LENGTH)
    fields["reason"] = text("reason", required=False, limit=200) or ""
    start = text("start", required=True)
    fields["start"] = None
    if start is not None:
        try:
            moment = datetime.fromisoformat(start)
            # A time without an offset is the practice's local time, as the scheduler shows it.
            fields["start"] = moment.replace(tzinfo=LOCAL_ZONE) if moment.tzinfo is None else moment.astimezone(LOCAL_ZONE)
        except (ValueError, OverflowError):
            errors.append({"field": "start", "message": "must be an ISO 8601 date-time (local time, or with an offset)"})
    duration = body.get("duration_minutes")
    if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int) or not 1 <= duration <= MAX_DURATION_MINUTES):
        errors.append({"field": "duration_minutes", "message": f"must be a whole number of minutes from 1 to {MAX_DURATION_MINUTES}"})
        duration = None
    fields["duration"] = duration
    wanted = body.get("telehealth", False) if telehealth is None else telehealth
    if not isinstance(wanted, bool):
        errors.append({"field": "telehealth", "message": "must be true or false"})
    fields["telehealth"] = wanted is True
    fields["booked_via"] = booked_via
    if errors:
        raise refuse(106, f"{errors[0]['field']}: {errors[0]['message']}", errors=errors)
    return fields


def existing_reference(practice: Practice, reference: str | None) -> Record | None:
    """The live appointment a client reference already booked, if any."""
    if not reference:
        return None
    index = practice.references.get(reference)
    return practice.record("appointments", index) if index is not None else None


def resolve(practice: Practice, fields: dict[str, Any]) -> Booking:
    """Look up the records the request names (100, 101, 102, 103)."""
    patient = practice.index("patients", fields["patient_id"])
    if patient is None:
        raise refuse(100, f"no patient {fields['patient_id']!r}", patient_id=fields["patient_id"])
    provider = practice.index("providers", fields["provider_id"])
    if provider is None:
        raise refuse(101, f"no provider {fields['provider_id']!r}", provider_id=fields["provider_id"])
    facility = practice.index("facilities", fields["facility_id"])
    if facility is None:
        raise refuse(102, f"no facility {fields['facility_id']!r}", facility_id=fields["facility_id"])
    if fields["visit_type"] not in VISIT_TYPES:
        raise refuse(103, f"no visit type {fields['visit_type']!r}", visit_type=fields["visit_type"], known=sorted(VISIT_TYPES))
    return Booking(patient, provider, facility, fields["start"], fields["duration"], fields["visit_type"], fields["telehealth"],
                   fields["reference"], fields["reason"], fields["booked_via"])


def now_local() -> datetime:
    return datetime.now(UTC).astimezone(LOCAL_ZONE)


def check(practice: Practice, booking: Booking) -> dict[str, Any]:
    """Apply the template and booking rules (301–305); the template block the booking falls in."""
    start = booking.start
    provider_id = practice.ref("providers", booking.provider)
    facility_id = practice.ref("facilities", booking.facility)
    if start <= now_local():
        raise refuse(305, "appointments can only be booked in the future", start=start.isoformat())
    if start.date() > now_local().date() + timedelta(days=MAX_DAYS_AHEAD):
        raise refuse(301, f"the schedule is open {MAX_DAYS_AHEAD} days ahead", start=start.isoformat())
    provider = practice.record("providers", booking.provider)
    templates = provider.get("templates") or []
    minute = start.hour * 60 + start.minute
    that_day = [b for b in templates if b.get("weekday") == start.isoweekday()]
    here = [b for b in that_day if b.get("facility_id") == facility_id and minutes_of(b["start"]) <= minute < minutes_of(b["end"])]
    if not here or start.second or start.microsecond:
        raise refuse(301, f"{provider_id} has no template block at {facility_id} on {start.strftime('%A')} at {start.strftime('%H:%M')}",
                     provider_id=provider_id, facility_id=facility_id, start=start.isoformat(),
                     blocks_that_day=[{k: b[k] for k in ("facility_id", "start", "end", "slot_minutes", "visit_types")} for b in that_day])
    block = here[0]
    slot, block_start, block_end = block["slot_minutes"], minutes_of(block["start"]), minutes_of(block["end"])
    duration = booking.duration or slot
    if (minute - block_start) % slot or duration % slot:
        raise refuse(304, f"the block has {slot}-minute slots from {block['start']}: start on one and book whole slots",
                     slot_minutes=slot, block_start=block["start"], duration_minutes=duration)
    if minute + duration > block_end:
        raise refuse(301, f"the appointment would run past the end of the block at {block['end']}", provider_id=provider_id,
                     facility_id=facility_id, block_end=block["end"], start=start.isoformat(), duration_minutes=duration)
    if booking.visit_type not in block["visit_types"]:
        raise refuse(302, f"visit type {booking.visit_type} is not allowed in this block ({', '.join(block['visit_types'])})",
                     visit_type=booking.visit_type, allowed=block["visit_types"], block={k: block[k] for k in ("start", "end", "facility_id")})
    conflict = occupant(practice, booking.provider, start, start + timedelta(minutes=duration), slot_minutes=slot)
    if conflict is not None:
        raise refuse(303, f"{provider_id} is already booked at {start.isoformat()} ({conflict})", conflicting_appointment_id=conflict,
                     provider_id=provider_id, start=start.isoformat())
    return block


def occupant(practice: Practice, provider: int, start: datetime, end: datetime, *, slot_minutes: int | None = None) -> str | None:
    """The id of a live, not cancelled appointment of the provider overlapping [start, end), if any."""
    appointments = practice.table("appointments")
    step = slot_minutes or _slot_at(practice, provider, start) or 5
    moment = start
    while moment < end:  # generated appointments: one slot each, found by the slot they hold
        index = practice.base_occupant(provider, moment.date(), moment.hour * 60 + moment.minute)
        if index is not None:
            record = practice.record("appointments", index)
            if record is not None and record["status"] not in FREE:
                return record["id"]
        moment += timedelta(minutes=step)
    for index in practice.booked.get(provider, ()):  # and those created since
        if index in appointments.deleted:
            continue
        record = practice.record("appointments", index)
        if record is None or record["status"] in FREE:
            continue
        if datetime.fromisoformat(record["start"]) < end and start < datetime.fromisoformat(record["end"]):
            return record["id"]
    return None


def _slot_at(practice: Practice, provider: int, moment: datetime) -> int | None:
    record = practice.record("providers", provider) or {}
    minute = moment.hour * 60 + moment.minute
    for block in record.get("templates") or []:
        if block["weekday"] == moment.isoweekday() and minutes_of(block["start"]) <= minute < minutes_of(block["end"]):
            return block["slot_minutes"]
    return None


def book(practice: Practice, booking: Booking, block: dict[str, Any]) -> int:
    """Create the appointment (after `check`, under the vendor's lock); its index."""
    duration = booking.duration or block["slot_minutes"]
    end = booking.start + timedelta(minutes=duration)
    index = practice.table("appointments").count
    meeting = f"HLW{mix(practice.seed ^ 0xB00C, index) % 10**10:010d}"
    fields = {
        "patient_id": practice.ref("patients", booking.patient), "provider_id": practice.ref("providers", booking.provider),
        "facility_id": practice.ref("facilities", booking.facility), "start": booking.start.isoformat(), "end": end.isoformat(),
        "duration_minutes": duration, "visit_type": booking.visit_type, "visit_type_name": VISIT_TYPES[booking.visit_type][0],
        "telehealth": booking.telehealth, "visit_mode": "telehealth" if booking.telehealth else "in_person",
        "healow": {"meeting_id": meeting, "join_url": f"https://healow.example/tv/{meeting}"} if booking.telehealth else None,
        "status": "scheduled", "reason": booking.reason or VISIT_TYPES[booking.visit_type][0], "comment": "", "reference": booking.reference,
        "booked_via": booking.booked_via, "encounter_id": None,
    }
    index = practice.table("appointments").create(fields)
    practice.booked.setdefault(booking.provider, []).append(index)
    if booking.reference:
        practice.references[booking.reference] = index
    return index


def free_slots(practice: Practice, provider: int, day: date, facility: int | None = None) -> list[dict[str, Any]]:
    """The provider's open slots on a day (in the future), per its template."""
    record = practice.record("providers", provider)
    if record is None:
        return []
    facility_id = practice.ref("facilities", facility)
    now = now_local()
    out = []
    for block in record.get("templates") or []:
        if block["weekday"] != day.isoweekday() or (facility_id and block["facility_id"] != facility_id):
            continue
        slot = block["slot_minutes"]
        for minute in range(minutes_of(block["start"]), minutes_of(block["end"]) - slot + 1, slot):
            start = practice.local(day, minute)
            end = start + timedelta(minutes=slot)
            if start <= now or occupant(practice, provider, start, end, slot_minutes=slot) is not None:
                continue
            out.append({"start": start.isoformat(), "end": end.isoformat(), "facility_id": block["facility_id"], "slot_minutes": slot,
                        "visit_types": list(block["visit_types"])})
    out.sort(key=lambda s: s["start"])
    return out
