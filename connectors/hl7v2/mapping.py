"""HL7 v2 message → canonical record dicts (no database here: `services.apply_message` writes them).

Field access is by index over `formats.hl7v2.Message` (escapes decoded), not through hl7apy's full
parse: that runs at ~60 messages/s and the worker must map hundreds a second.

Patient fields follow HL7's update rule: an empty field leaves the stored value alone, `""` clears
it. So the mapping returns *changes* for patients (`None` = no change), which the service lays
over the stored record.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, tzinfo
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.hl7v2.constants import IDENTIFIER_SYSTEM_PREFIX, LOINC_SYSTEMS, SUPPORTED
from formats.hl7v2 import Hl7Error, Message, parse_dtm, read_header, unescape

NULL = '""'  # HL7's explicit "delete this value"

_SEX = {"M": "male", "F": "female", "O": "other", "A": "other", "N": "other", "U": "unknown"}
_SCH_STATUS = {
    "BOOKED": "booked", "CANCELLED": "cancelled", "COMPLETE": "fulfilled", "NOSHOW": "noshow", "PENDING": "pending",
    "WAITLIST": "waitlist", "STARTED": "arrived", "DELETED": "entered-in-error", "DC": "cancelled", "BLOCKED": "booked",
}
_TRIGGER_STATUS = {"S15": "cancelled", "S26": "noshow"}
_SIGNED = {"AU", "LA"}  # TXA-17 authenticated, legally authenticated
_UNIT_MINUTES = {"MIN": 1, "M": 1, "S": 1 / 60, "SEC": 1 / 60, "H": 60, "HR": 60, "HOUR": 60, "D": 1440}


class MappingError(ValueError):
    """A message that was accepted but cannot be mapped: final, kept in triage with `where`."""

    def __init__(self, where: str, reason: str):
        self.where, self.reason = where, reason
        super().__init__(f"{where}: {reason}")


@dataclass
class Plan:
    """What one message asks of the canonical store, in the order it must happen."""

    message_type: str
    trigger: str
    patients: list[dict[str, Any]] = field(default_factory=list)  # changes (None = keep) with identifiers
    merges: list[tuple[str, str]] = field(default_factory=list)  # (surviving, merged) patient external ids
    appointments: list[dict[str, Any]] = field(default_factory=list)
    encounters: list[dict[str, Any]] = field(default_factory=list)  # new children merged into what is stored
    skipped: list[str] = field(default_factory=list)  # what was left out, and why (no PHI)


def map_message(text: str, tz: tzinfo) -> Plan:
    """Map one accepted message. Raises MappingError (or Hl7Error) naming the field at fault."""
    header = read_header(text)
    msg = Message(text, header.encoding)
    plan = Plan(header.message_type, header.trigger)
    if header.trigger not in SUPPORTED.get(header.message_type, ()):
        raise MappingError("MSH-9", f"{header.message_type}^{header.trigger} is not mapped")
    sent_at = _dtm(header.timestamp, tz, "MSH-7")
    if header.message_type == "ADT":
        _map_adt(msg, header.trigger, plan)
    elif header.message_type == "SIU":
        _map_siu(msg, header.trigger, plan, tz)
    elif header.message_type == "ORU":
        _map_oru(msg, plan, tz, sent_at, header.control_id)
    else:
        _map_mdm(msg, plan, tz, sent_at)
    return plan


# --- helpers --------------------------------------------------------------------------------------

def _dtm(value: str, tz: tzinfo, where: str) -> datetime | None:
    if value == NULL:
        return None
    try:
        return parse_dtm(value, tz)
    except Hl7Error as exc:
        raise MappingError(where, exc.reason) from None


def _change(value: str) -> str | None:
    """A field's value as a change: None leaves it, '' clears it."""
    if not value:
        return None
    return "" if value == NULL else value


def _person_name(msg: Message, value: str, offset: int = 0) -> str:
    """XCN/PPN (id^family^given…, offset 1) or XPN (family^given…, offset 0) → 'Given Family'."""
    family = msg.component(value, 1 + offset)
    given = msg.component(value, 2 + offset)
    name = " ".join(p for p in (given, family) if p and p != NULL)
    return name or msg.component(value, 1)


def _identifiers(msg: Message, fields: list[str] | None, n: int, where: str) -> list[dict[str, str]]:
    out: list[dict[str, str]] = []
    for rep in msg.repetitions(fields, n):
        value = msg.component(rep, 1).strip()
        if not value or value == NULL:
            continue
        enc = msg.encoding
        components = rep.split(enc.component)
        authority = components[3].split(enc.subcomponent) if len(components) > 3 else [""]  # HD: namespace&universal id&type
        namespace = unescape(authority[0], enc)
        universal = unescape(authority[1], enc) if len(authority) > 1 else ""
        if universal:
            system = universal if ":" in universal else f"urn:oid:{universal}"
        else:
            system = f"{IDENTIFIER_SYSTEM_PREFIX}{namespace or 'local'}"
            type_code = msg.component(rep, 5)
            if type_code:
                system = f"{system}:{type_code}"
        if len(value) > 100 or len(system) > 200:
            raise MappingError(where, "an identifier is longer than the hub keeps")
        out.append({"system": system, "value": value})
    return out


def _patient_id(msg: Message, fields: list[str] | None, n: int, where: str) -> str:
    """The external id of a patient: the CX.1 of the MR-typed repetition, else of the first."""
    reps = [r for r in msg.repetitions(fields, n) if msg.component(r, 1).strip() not in ("", NULL)]
    if not reps:
        raise MappingError(where, "no patient identifier")
    chosen = next((r for r in reps if msg.component(r, 5).upper() == "MR"), reps[0])
    value = msg.component(chosen, 1).strip()
    if len(value) > 200:
        raise MappingError(where, "the patient identifier is longer than 200 characters")
    return value


def _patient(msg: Message, pid: list[str]) -> dict[str, Any]:
    """PID → patient changes (None: keep the stored value)."""
    external_id = _patient_id(msg, pid, 3, "PID-3")
    name = msg.repetitions(pid, 5)[:1]
    family = given = None
    partial_given = False
    if name:
        family = _change(msg.component(name[0], 1))
        first, middle = msg.component(name[0], 2), msg.component(name[0], 3)
        if first == NULL:
            given = []
        elif first:
            given = [g for g in (first, middle) if g and g != NULL]
            partial_given = not middle  # no middle name sent: keep a stored one (see services._overlay_patient)
    address = msg.repetitions(pid, 11)[:1]
    addr: dict[str, str | None] = {}
    if address and address[0] == NULL:
        addr = dict.fromkeys(("address_line1", "address_line2", "city", "state", "postal_code", "country"), "")
    elif address:
        for key, n in (("address_line1", 1), ("address_line2", 2), ("city", 3), ("state", 4), ("postal_code", 5), ("country", 6)):
            addr[key] = _change(msg.component(address[0], n))
    birth = msg.value(pid, 7)
    if birth == NULL:
        birth_date: Any = ""
    elif birth:
        if len(birth) < 8 or not birth[:8].isdigit():
            raise MappingError("PID-7", "the birth date is not YYYYMMDD")
        birth_date = f"{birth[0:4]}-{birth[4:6]}-{birth[6:8]}"
    else:
        birth_date = None
    sex_code = msg.value(pid, 8).upper()
    phone = msg.repetitions(pid, 13)[:1]
    phone_value = None
    email_value = None
    for rep in msg.repetitions(pid, 13):
        if msg.component(rep, 3).upper() == "INTERNET" and msg.component(rep, 4):
            email_value = msg.component(rep, 4)
            break
    if phone:
        number = msg.component(phone[0], 1)
        if not number and msg.component(phone[0], 7):  # XTN: area code ^ local number (7)
            number = f"({msg.component(phone[0], 6)}) {msg.component(phone[0], 7)}"
        phone_value = _change(number)
    language = msg.value(pid, 15).lower()
    record: dict[str, Any] = {
        "external_id": external_id,
        "family_name": family, "given_names": given,
        "birth_date": "" if birth_date == "" else birth_date,
        "sex": _SEX.get(sex_code) if sex_code and sex_code != NULL else ("unknown" if sex_code == NULL else None),
        "phone": phone_value, "email": email_value,
        "language": _change(language[:35]) if language else None,
        "identifiers": _identifiers(msg, pid, 3, "PID-3"),
        "partial_given_names": partial_given,
        **addr,
    }
    return record


# --- message types ----------------------------------------------------------------------------------

def _map_adt(msg: Message, trigger: str, plan: Plan) -> None:
    if trigger == "A40":
        pairs = [g for g in msg.groups("PID")]
        if not pairs:
            raise MappingError("PID", "an A40 needs a PID segment for the surviving patient")
        for group in pairs:
            pid = group[0][1]
            mrg = next((f for sid, f in group if sid == "MRG"), None)
            if mrg is None:
                raise MappingError("MRG", "an A40 needs an MRG segment naming the merged patient")
            survivor = _patient(msg, pid)
            merged = _patient_id(msg, mrg, 1, "MRG-1")
            survivor["identifiers"] = survivor["identifiers"] + _identifiers(msg, mrg, 1, "MRG-1")
            plan.patients.append(survivor)
            if merged != survivor["external_id"]:
                plan.merges.append((survivor["external_id"], merged))
        return
    pid = msg.first("PID")
    if pid is None:
        raise MappingError("PID", f"an ADT^{trigger} needs a PID segment")
    plan.patients.append(_patient(msg, pid))


def _minutes(amount: str, units: str, where: str) -> float:
    if not amount:
        return 0.0
    try:
        value = float(amount)
    except ValueError:
        raise MappingError(where, "the duration is not a number") from None
    minutes = value * _UNIT_MINUTES.get(units.upper(), 1)
    if not 0 <= minutes <= 60 * 24 * 366:
        raise MappingError(where, "the duration is negative or longer than a year")
    return minutes


def _map_siu(msg: Message, trigger: str, plan: Plan, tz: tzinfo) -> None:
    sch = msg.first("SCH")
    if sch is None:
        raise MappingError("SCH", "an SIU message needs an SCH segment")
    external_id = msg.value(sch, 2) or msg.value(sch, 1)
    if not external_id:
        raise MappingError("SCH-2", "neither a filler (SCH-2) nor a placer (SCH-1) appointment id")
    pid = msg.first("PID")
    if pid is None:
        raise MappingError("PID", "an SIU message needs a PID segment")
    patient = _patient(msg, pid)
    plan.patients.append(patient)
    ais = msg.first("AIS")
    start = _dtm(msg.value(sch, 11, 4), tz, "SCH-11.4")
    end = _dtm(msg.value(sch, 11, 5), tz, "SCH-11.5")
    if start is None and ais is not None:
        start = _dtm(msg.value(ais, 4), tz, "AIS-4")
    for resource in ("AIG", "AIL", "AIP"):
        if start is not None:
            break
        segment = msg.first(resource)
        if segment is not None:
            start = _dtm(msg.value(segment, 6), tz, f"{resource}-6")
    if start is None:
        raise MappingError("SCH-11.4", "the appointment has no start (SCH-11.4, AIS-4 or AIx-6)")
    if end is None:
        minutes = _minutes(msg.value(sch, 9), msg.value(sch, 10), "SCH-9")
        if not minutes and ais is not None:
            minutes = _minutes(msg.value(ais, 7), msg.value(ais, 8), "AIS-7")
        end = start + timedelta(minutes=minutes)
    if end < start:
        raise MappingError("SCH-11.5", "the appointment ends before it starts")
    status = _TRIGGER_STATUS.get(trigger) or _SCH_STATUS.get(msg.value(sch, 25).upper().replace("-", ""), "booked")
    reason = msg.value(sch, 7, 2) or msg.value(sch, 7, 1)
    service_code = msg.value(ais, 3) if ais is not None else ""
    if not reason and ais is not None:
        reason = msg.value(ais, 3, 2)
    plan.appointments.append({
        "external_id": external_id, "patient": patient["external_id"],
        "start": start, "end": end, "status": status, "visit_type": "in-person",
        "service_code": service_code[:40], "units": "1", "description": reason[:300],
    })


def _number(value: str) -> Decimal | None:
    try:
        number = Decimal(value.strip())
    except InvalidOperation:
        return None
    return number if number.is_finite() else None


def _map_oru(msg: Message, plan: Plan, tz: tzinfo, sent_at: datetime | None, control_id: str) -> None:
    pid = msg.first("PID")
    if pid is None:
        raise MappingError("PID", "an ORU^R01 needs a PID segment")
    patient = _patient(msg, pid)
    plan.patients.append(patient)
    pv1 = msg.first("PV1")
    visit = msg.value(pv1, 19) if pv1 is not None else ""
    admitted = _dtm(msg.value(pv1, 44), tz, "PV1-44") if pv1 is not None else None
    orders = msg.groups("OBR")
    if not orders:
        raise MappingError("OBR", "an ORU^R01 needs an OBR segment")
    encounters: dict[str, dict[str, Any]] = {}
    for index, group in enumerate(orders, start=1):
        obr = group[0][1]
        observed = _dtm(msg.value(obr, 7), tz, f"OBR({index})-7")
        key = visit or f"oru:{msg.value(obr, 3) or msg.value(obr, 2) or f'{control_id}-{index}'}"
        encounter = encounters.setdefault(key, {
            "external_id": key, "patient": patient["external_id"], "status": "finished",
            "period_start": admitted or observed or sent_at, "vitals": [],
        })
        if encounter["period_start"] is None:
            raise MappingError(f"OBR({index})-7", "no time for the encounter (PV1-44, OBR-7 or MSH-7)")
        for n, (sid, obx) in enumerate(group[1:], start=1):
            if sid != "OBX":
                continue
            where = f"OBX({n})"
            system = msg.value(obx, 3, 3).upper()
            code = msg.value(obx, 3, 1)
            if system not in LOINC_SYSTEMS:
                plan.skipped.append(f"{where}: not LOINC-coded")
                continue
            if msg.value(obx, 11).upper() in ("X", "D", "W"):
                plan.skipped.append(f"{where}: result status {msg.value(obx, 11)}")
                continue
            value = _number(msg.value(obx, 5)) if msg.value(obx, 2).upper() in ("NM", "SN", "") else None
            if value is None:
                plan.skipped.append(f"{where}: not a number")
                continue
            if len(code) > 10:
                raise MappingError(f"{where}-3", "the LOINC code is longer than 10 characters")
            encounter["vitals"].append({
                "loinc": code, "display": msg.value(obx, 3, 2)[:200], "value": str(value),
                "unit": msg.value(obx, 6)[:20], "effective_at": _dtm(msg.value(obx, 14), tz, f"{where}-14") or observed,
            })
    plan.encounters.extend(e for e in encounters.values() if e["vitals"])


def _map_mdm(msg: Message, plan: Plan, tz: tzinfo, sent_at: datetime | None) -> None:
    pid = msg.first("PID")
    txa = msg.first("TXA")
    if pid is None:
        raise MappingError("PID", "an MDM^T02 needs a PID segment")
    if txa is None:
        raise MappingError("TXA", "an MDM^T02 needs a TXA segment")
    patient = _patient(msg, pid)
    plan.patients.append(patient)
    pv1 = msg.first("PV1")
    visit = msg.value(pv1, 19) if pv1 is not None else ""
    document = msg.value(txa, 12)
    if not visit and not document:
        raise MappingError("TXA-12", "no unique document number and no visit number (PV1-19)")
    activity = _dtm(msg.value(txa, 4), tz, "TXA-4")
    lines = [msg.text(obx, 5) for sid, obx in msg.segments if sid == "OBX"]
    text = "\n".join(line for line in lines if line)
    if not text.strip():
        raise MappingError("OBX-5", "the document has no text")
    completion = msg.value(txa, 17).upper()
    signed = completion in _SIGNED
    authenticator = msg.repetitions(txa, 22)[:1]
    signed_at = _dtm(msg.component(authenticator[0], 15), tz, "TXA-22.15") if authenticator else None
    author_rep = msg.repetitions(txa, 5)[:1]
    note = {
        "author": _person_name(msg, author_rep[0], 1)[:200] if author_rep else "",
        "text": text, "status": "signed" if signed else "draft", "locked": signed,
        "signed_at": (signed_at or activity) if signed else None,
        "signed_by": (_person_name(msg, authenticator[0], 1)[:200] if authenticator else "") if signed else "",
        "amendments": [],
    }
    period = (_dtm(msg.value(pv1, 44), tz, "PV1-44") if pv1 is not None else None) or activity or sent_at
    if period is None:
        raise MappingError("TXA-4", "no time for the encounter (PV1-44, TXA-4 or MSH-7)")
    plan.encounters.append({
        "external_id": visit or f"mdm:{document}", "patient": patient["external_id"], "status": "finished",
        "period_start": period, "notes": [note],
    })
