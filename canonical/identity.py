"""Patient identity across connections (the master patient index).

Every patient record of a source links to one `MasterPatient`, the person. `link_patients` runs
after an upsert with the ids it changed and decides, for each patient:

1. **Deterministic**: a patient of another connection holds the same person-unique identifier
   (MBI, SSN, Medicare number; never an MRN, which is per source) → same master. If the holders
   already sit on two different established masters, the identifier is suspect: the pairs go to
   review instead of being merged silently.
2. **Scored** against candidates blocked by birth date (the same date, or day and month swapped):
   see `score_patients` for the formula. score ≥ link threshold → same master; review threshold ≤
   score < link threshold → a pending `MatchReview`; below → nothing.
3. A patient still without a master gets a new one.

Rules that hold throughout: two records of one connection are never put together automatically (a
source's own duplicates go to review); a pair a person decided (linked or kept apart) is never
queued again, and automatic linking never joins two patients a person kept apart. Links are never
undone automatically; "keep apart" on a review is how a person separates them.

The run plans in memory from a few bulk reads, then applies the plan in one transaction with the
masters it touches and the patients it assigns locked (`select_for_update`) and re-checked; if a
concurrent run changed them in between, the plan is dropped and made again, so no link is lost.
Call it in its own transaction after the upsert has committed.
"""

from __future__ import annotations

import functools
import itertools
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.db import connection as db_connection
from django.db import models, transaction
from django.db.models import Q
from django.utils import timezone

from canonical.choices import MatchStatus, Sex
from canonical.ids import uuid7s
from canonical.models import MasterPatient, MatchReview, Patient, PatientIdentifier
from canonical.names import are_nicknames, first_given_name, jaro_winkler, normalize_name
from hub.bulk import in_values, update_rows
from tenants.audit import object_type_of, record_audit, record_audits
from tenants.models import Tenant

if TYPE_CHECKING:
    from django.contrib.auth.models import AbstractBaseUser

# Identifier systems that name a person, not a chart: a value shared across sources is the same
# person. System -> the identifier it carries (two systems for the SSN: the FHIR URI and the OID).
# MRNs and other per-source identifiers must never be added here.
PERSON_IDENTIFIER_SYSTEMS: dict[str, str] = {
    "http://hl7.org/fhir/sid/us-mbi": "MBI",
    "http://hl7.org/fhir/sid/us-medicare": "Medicare number",
    "http://hl7.org/fhir/sid/us-ssn": "SSN",
    "urn:oid:2.16.840.1.113883.4.1": "SSN",
}

DEFAULT_LINK_THRESHOLD = Decimal("0.92")
DEFAULT_REVIEW_THRESHOLD = Decimal("0.75")

# Score weights (points out of 1). The positive weights of a perfect pair add up to exactly 1.
WEIGHT_BIRTH_DATE = Decimal("0.35")  # same birth date
WEIGHT_BIRTH_DATE_SWAPPED = Decimal("0.20")  # day and month swapped (a common entry error)
WEIGHT_FAMILY_EXACT = Decimal("0.30")  # normalized family names equal (spaces ignored)
WEIGHT_FAMILY_CLOSE = Decimal("0.20")  # Jaro-Winkler ≥ FAMILY_CLOSE_MIN, or one shares a part of a compound name
WEIGHT_GIVEN_EXACT = Decimal("0.25")  # first given names equal
WEIGHT_GIVEN_NICKNAME = Decimal("0.15")  # Bob ~ Robert
WEIGHT_GIVEN_CLOSE = Decimal("0.15")  # Jaro-Winkler ≥ GIVEN_CLOSE_MIN (Jon ~ John)
WEIGHT_GIVEN_INITIAL = Decimal("0.12")  # "J" ~ "James"
WEIGHT_GIVEN_DIFFERS = Decimal("-0.20")  # both present and unrelated: twins, siblings
WEIGHT_SEX_SAME = Decimal("0.10")
WEIGHT_SEX_UNKNOWN = Decimal("0.05")  # one side unknown: no evidence either way
WEIGHT_IDENTIFIER_DIFFERS = Decimal("-0.30")  # both carry e.g. an MBI and the values differ
FAMILY_CLOSE_MIN = 0.88  # Smith ~ Smyth is 0.89
GIVEN_CLOSE_MIN = 0.90

CHUNK = 900  # parameters per IN (...) clause: under the 999 that old SQLite builds allow per statement
MAX_ATTEMPTS = 5  # plans made before giving up on a tenant whose patients keep changing underneath
_SCORE_QUANTUM = Decimal("0.001")  # MatchReview.score has three decimal places

_T = TypeVar("_T")


@dataclass
class IdentityReport:
    linked: int = 0  # pairs joined onto one master by this run
    queued: int = 0  # pending reviews created
    new_masters: int = 0  # masters created for patients that matched no one


@dataclass(frozen=True)
class MatchScore:
    """A pair's score in [0, 1] and why. `reasons` is for the reviewer and may quote the nickname
    pair; `audit_reasons` says the same without any name, for audit events."""

    value: Decimal
    reasons: list[str]
    audit_reasons: list[str]


class IdentityBusy(RuntimeError):
    """Concurrent runs kept changing the same patients; the caller (an actor) should retry later."""


def link_threshold() -> Decimal:
    return Decimal(str(getattr(settings, "IDENTITY_LINK_THRESHOLD", DEFAULT_LINK_THRESHOLD)))


def review_threshold() -> Decimal:
    return Decimal(str(getattr(settings, "IDENTITY_REVIEW_THRESHOLD", DEFAULT_REVIEW_THRESHOLD)))


def patients_of_master(master: MasterPatient) -> models.QuerySet[Patient]:
    """Every source record of one person (tombstones included), oldest first."""
    return Patient.objects.filter(master=master).select_related("source_connection").order_by("created_at", "pk")


# --- identifiers -----------------------------------------------------------------------------------

_IDENTIFIER_NOISE = re.compile(r"[\s\-.]")


def _identifier_key(system: str, value: str) -> tuple[str, str] | None:
    """(identifier name, value without spaces, dashes, dots, upper-cased) or None if not person-unique."""
    name = PERSON_IDENTIFIER_SYSTEMS.get(system)
    if name is None:
        return None
    normalized = _IDENTIFIER_NOISE.sub("", value).upper()
    return (name, normalized) if normalized else None


def _stored_forms(value: str) -> set[str]:
    """The spellings a source may have stored for one normalized value (looked up verbatim)."""
    forms = {value, value.lower()}
    if len(value) == 9 and value.isdigit():  # an SSN, usually written 123-45-6789
        forms.add(f"{value[:3]}-{value[3:5]}-{value[5:]}")
    return forms


# --- scoring ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Person:
    id: int
    public_id: UUID
    connection_id: int
    family: str  # normalized
    given: str  # first given name, normalized
    birth_date: date | None
    sex: str
    master_id: int | None
    deleted: bool


# Columns of a `_Person` row, in `_person`'s order (raw SQL: these are also the column names).
_PERSON_COLUMNS = ("id", "public_id", "source_connection_id", "family_name", "given_names", "birth_date", "sex", "master_id", "deleted_at")


@functools.lru_cache(maxsize=65536)
def _normalized_family(family: str | None) -> str:
    return normalize_name(family)  # cached: a tenant holds the same few thousand family names many times


@functools.lru_cache(maxsize=65536)
def _first_given_of_json(given_names: str) -> str:
    return first_given_name(json.loads(given_names))


def _person(row: Sequence[Any]) -> _Person:
    """A `_Person` from model values or a raw row (SQLite gives the uuid as hex and dates as text;
    both databases give the JSON list of given names as text, as Django has psycopg load it)."""
    pk, public_id, connection_id, family, given_names, birth_date, sex, master_id, deleted_at = row
    return _Person(
        id=pk, public_id=public_id if isinstance(public_id, UUID) else UUID(public_id), connection_id=connection_id,
        family=_normalized_family(family),
        given=_first_given_of_json(given_names) if isinstance(given_names, str) else first_given_name(given_names),
        birth_date=date.fromisoformat(birth_date) if isinstance(birth_date, str) else birth_date, sex=sex or Sex.UNKNOWN,
        master_id=master_id, deleted=deleted_at is not None,
    )


def _swapped(day: date | None) -> date | None:
    """The date with day and month exchanged, if that is another valid date."""
    if day is None or day.day == day.month or day.day > 12:
        return None
    return day.replace(month=day.day, day=day.month)


# Each part of a score: (weight, reason, the same reason without any name, for audit events).
_Part = tuple[Decimal, str, str]


def _birth_part(left: date | None, right: date | None) -> _Part:
    if left is not None and left == right:
        return WEIGHT_BIRTH_DATE, "same birth date", "same birth date"
    if left is not None and _swapped(left) == right:
        return WEIGHT_BIRTH_DATE_SWAPPED, "birth date day and month swapped", "birth date day and month swapped"
    reason = "birth date differs" if left and right else "birth date missing"
    return Decimal(0), reason, reason


@functools.lru_cache(maxsize=65536)
def _family_part(left: str, right: str) -> _Part:
    """Cached by the pair of normalized names: a run compares the same common names many times."""
    if not left or not right:
        return Decimal(0), "family name missing", "family name missing"
    if left.replace(" ", "") == right.replace(" ", ""):
        return WEIGHT_FAMILY_EXACT, "family name matches", "family name matches"
    similarity = jaro_winkler(left.replace(" ", ""), right.replace(" ", ""))
    if similarity >= FAMILY_CLOSE_MIN:
        reason = f"family name close ({similarity:.2f})"
        return WEIGHT_FAMILY_CLOSE, reason, reason
    if {part for part in left.split() if len(part) > 3} & {part for part in right.split() if len(part) > 3}:
        return WEIGHT_FAMILY_CLOSE, "family name partly matches", "family name partly matches"
    return Decimal(0), "family name differs", "family name differs"


@functools.lru_cache(maxsize=65536)
def _given_part(left: str, right: str) -> _Part:
    if not left or not right:
        return Decimal(0), "given name missing", "given name missing"
    if left == right:
        return WEIGHT_GIVEN_EXACT, "given name matches", "given name matches"
    if are_nicknames(left, right):
        return WEIGHT_GIVEN_NICKNAME, f"given name nickname ({left.title()}→{right.title()})", "given name nickname"
    if (len(left) == 1 or len(right) == 1) and left[0] == right[0]:
        return WEIGHT_GIVEN_INITIAL, "given name initial matches", "given name initial matches"
    if jaro_winkler(left, right) >= GIVEN_CLOSE_MIN:
        return WEIGHT_GIVEN_CLOSE, "given name close", "given name close"
    return WEIGHT_GIVEN_DIFFERS, "given name differs", "given name differs"


def _sex_part(left: str, right: str) -> _Part:
    if Sex.UNKNOWN in (left, right):
        return WEIGHT_SEX_UNKNOWN, "sex unknown", "sex unknown"
    if left == right:
        return WEIGHT_SEX_SAME, "sex matches", "sex matches"
    return Decimal(0), "sex differs", "sex differs"


def _demographic_parts(left: _Person, right: _Person) -> tuple[_Part, _Part, _Part, _Part]:
    return (
        _birth_part(left.birth_date, right.birth_date), _family_part(left.family, right.family),
        _given_part(left.given, right.given), _sex_part(left.sex, right.sex),
    )


def _clamped(total: Decimal) -> Decimal:
    return min(max(total, Decimal(0)), Decimal(1)).quantize(_SCORE_QUANTUM, rounding=ROUND_HALF_UP)


def _may_reach(left: _Person, right: _Person, threshold: Decimal) -> bool:
    """Whether the pair's score could reach `threshold`: its score without identifiers does (a
    differing identifier only lowers a score), so the pair is worth reading identifiers for."""
    return _clamped(sum(part[0] for part in _demographic_parts(left, right))) >= threshold


def _score(left: _Person, right: _Person, left_ids: dict[str, set[str]], right_ids: dict[str, set[str]]) -> MatchScore:
    parts = list(_demographic_parts(left, right))
    for name in sorted(left_ids.keys() & right_ids.keys()):
        if not left_ids[name] & right_ids[name]:
            parts.append((WEIGHT_IDENTIFIER_DIFFERS, f"{name} differs", f"{name} differs"))
    value = _clamped(sum(part[0] for part in parts))
    return MatchScore(value=value, reasons=[part[1] for part in parts], audit_reasons=[part[2] for part in parts])


def score_patients(patient: Patient, candidate: Patient) -> MatchScore:
    """Score two stored patients (two queries for their identifiers). The formula, in points:
    birth date same 0.35 / day-month swapped 0.20; family name equal 0.30 / close 0.20; first given
    name equal 0.25 / nickname 0.15 / close 0.15 / initial 0.12 / unrelated −0.20; sex same 0.10 /
    one unknown 0.05 / different 0; each person-unique identifier both carry with different values
    −0.30. The sum is clamped to [0, 1] and rounded to three places."""
    people = [
        _person([p.pk, p.public_id, p.source_connection_id, p.family_name, p.given_names, p.birth_date, p.sex, p.master_id, p.deleted_at])
        for p in (patient, candidate)
    ]
    identifiers = [_identifiers_of([p.pk]).get(p.pk, {}) for p in (patient, candidate)]
    return _score(people[0], people[1], identifiers[0], identifiers[1])


# --- bulk reads ------------------------------------------------------------------------------------


def _chunks(items: Iterable[_T], size: int = CHUNK) -> Iterator[list[_T]]:
    iterator = iter(items)
    while chunk := list(itertools.islice(iterator, size)):
        yield chunk


def _quoted(table: str) -> str:
    return db_connection.ops.quote_name(table)


def _select(sql: str, params: Sequence[Any], column: str, values: Sequence[Any]) -> Iterator[tuple]:
    """Rows of `sql`, whose `{match}` is `column` among `values` (`= ANY` on PostgreSQL, IN lists
    elsewhere): raw SQL because the ORM's `__in` binds one parameter per value, and psycopg
    re-parses such statements in Python on every call."""
    with db_connection.cursor() as cursor:
        for condition, bound in in_values(column, values):
            cursor.execute(sql.format(match=condition), [*params, *bound])
            yield from cursor.fetchall()


def _select_each(columns: str, table: str, where: str, params: Sequence[Any], column: str, values: Sequence[Any], array_type: str) -> Iterator[tuple]:
    """Rows of `SELECT columns FROM table WHERE where AND column = v` for each v of `values`.
    PostgreSQL: one index lookup per value, in a LATERAL subquery that OFFSET 0 keeps the planner
    from flattening; given a few thousand values with `= ANY` it scans the whole table instead,
    3-4× slower here. Elsewhere: IN lists, which SQLite looks up in the index value by value."""
    if not values or db_connection.vendor != "postgresql":
        return _select(f"SELECT {columns} FROM {table} WHERE {where} AND {{match}}", params, column, values)  # noqa: S608
    sql = (
        f"SELECT x.* FROM unnest(%s::{array_type}[]) AS k(value) CROSS JOIN LATERAL "  # noqa: S608 (our names)
        f"(SELECT {columns} FROM {table} WHERE {where} AND {column} = k.value OFFSET 0) AS x"
    )
    with db_connection.cursor() as cursor:
        cursor.execute(sql, [list(values), *params])
        return iter(cursor.fetchall())


def _people(tenant: Tenant, pks: Sequence[int]) -> dict[int, _Person]:
    """The tenant's patients among these ids. The tenant is checked here, not in SQL: `tenant_id =
    … AND id = ANY(…)` let PostgreSQL's planner, without statistics, scan the whole tenant."""
    sql = f"SELECT tenant_id, {', '.join(_PERSON_COLUMNS)} FROM {_quoted(Patient._meta.db_table)} WHERE {{match}}"  # noqa: S608
    return {row[1]: _person(row[1:]) for row in _select(sql, [], "id", pks) if row[0] == tenant.pk}


def _born_on(tenant: Tenant, days: Sequence[date]) -> dict[int, _Person]:
    """The tenant's live patients born on one of these days (on the index of tenant and birth date)."""
    columns = ", ".join(_PERSON_COLUMNS)
    rows = _select_each(columns, _quoted(Patient._meta.db_table), "tenant_id = %s AND deleted_at IS NULL", [tenant.pk], "birth_date", days, "date")
    return {row[0]: _person(row) for row in rows}


def _identifiers_of(patient_ids: Iterable[int]) -> dict[int, dict[str, set[str]]]:
    """Person-unique identifiers of these patients: patient -> identifier name -> normalized values.
    By patient only (a patient has a few identifiers): with the system in SQL too, stale statistics
    could make PostgreSQL read every identifier of those systems through the lookup index."""
    found: dict[int, dict[str, set[str]]] = defaultdict(lambda: defaultdict(set))
    sql = f"SELECT patient_id, system, value FROM {_quoted(PatientIdentifier._meta.db_table)} WHERE {{match}}"  # noqa: S608
    for patient_id, system, value in _select(sql, [], "patient_id", sorted(patient_ids)):
        if key := _identifier_key(system, value):
            found[patient_id][key[0]].add(key[1])
    return found


def _pair(a: int, b: int) -> tuple[int, int]:
    """Reviews are stored with the lower patient id first, so one pair has one row."""
    return (a, b) if a < b else (b, a)


# --- planning --------------------------------------------------------------------------------------


class _Groups:
    """Union-find over patient ids: a group is one person as this run sees it. It starts from the
    current masters and grows as the run links pairs; it remembers each group's masters,
    connections and the patients a reviewer kept apart from its members."""

    def __init__(self) -> None:
        self.parent: dict[int, int] = {}
        self.members: dict[int, set[int]] = {}
        self.masters: dict[int, set[int]] = {}
        self.connections: dict[int, set[int]] = {}
        self.kept_apart: dict[int, set[int]] = {}

    def add(self, patient_id: int, connection_id: int, master_id: int | None, *, root: int | None = None) -> None:
        if patient_id in self.parent:
            return
        if root is None:
            self.parent[patient_id] = patient_id
            self.members[patient_id] = {patient_id}
            self.masters[patient_id] = {master_id} if master_id else set()
            self.connections[patient_id] = {connection_id}
            self.kept_apart[patient_id] = set()
        else:
            self.parent[patient_id] = root
            self.members[root].add(patient_id)
            self.connections[root].add(connection_id)

    def find(self, patient_id: int) -> int:
        root = patient_id
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[patient_id] != root:
            self.parent[patient_id], patient_id = root, self.parent[patient_id]
        return root

    def keep_apart(self, a: int, b: int) -> None:
        if a in self.parent:
            self.kept_apart[self.find(a)].add(b)
        if b in self.parent:
            self.kept_apart[self.find(b)].add(a)

    def refusal(self, a: int, b: int) -> str | None:
        """Why joining the groups of a and b automatically is not allowed, or None."""
        root_a, root_b = self.find(a), self.find(b)
        if self.connections[root_a] & self.connections[root_b]:
            return "would put two records of one source on one master"
        if self.kept_apart[root_a] & self.members[root_b] or self.kept_apart[root_b] & self.members[root_a]:
            return "would join patients a reviewer kept apart"
        return None

    def join(self, a: int, b: int) -> None:
        root_a, root_b = self.find(a), self.find(b)
        if root_a == root_b:
            return
        if len(self.members[root_a]) < len(self.members[root_b]):
            root_a, root_b = root_b, root_a
        self.parent[root_b] = root_a
        for attribute in (self.members, self.masters, self.connections, self.kept_apart):
            attribute[root_a] |= attribute.pop(root_b)


class _StalePlan(Exception):
    """A concurrent run changed what the plan was made from."""


@dataclass
class _Link:
    a: _Person
    b: _Person
    method: str  # "identifier" | "score"
    score: Decimal | None


@dataclass(slots=True)
class _NewMaster:
    """A master the plan creates; applying it fills in the row's ids."""

    pk: int | None = None
    public_id: UUID | None = None


@dataclass
class _Plan:
    people: dict[int, _Person] = field(default_factory=dict)
    links: list[_Link] = field(default_factory=list)
    reviews: dict[tuple[int, int], MatchScore] = field(default_factory=dict)
    # what applying the plan expects and does
    members: dict[int, set[int]] = field(default_factory=dict)  # touched master -> its patients when read
    new_masters: list[_NewMaster] = field(default_factory=list)
    assign: dict[int, _NewMaster | int] = field(default_factory=dict)  # masterless patient -> master (new or pk)
    moves: dict[int, int] = field(default_factory=dict)  # absorbed master pk -> surviving master pk
    link_master: list[_NewMaster | int] = field(default_factory=list)  # the master of each link, in order


def _holders(tenant: Tenant, wanted: set[tuple[str, str]]) -> dict[tuple[str, str], set[int]]:
    """The tenant's patients holding each wanted (identifier name, normalized value): per system,
    the stored spellings of its values on the indexed (tenant, system, value)."""
    forms: dict[str, set[str]] = defaultdict(set)
    for name, value in wanted:
        for system in (system for system, system_name in PERSON_IDENTIFIER_SYSTEMS.items() if system_name == name):
            forms[system] |= _stored_forms(value)
    holders: dict[tuple[str, str], set[int]] = defaultdict(set)
    table = _quoted(PatientIdentifier._meta.db_table)
    for system, values in sorted(forms.items()):
        for patient_id, value in _select_each("patient_id, value", table, "tenant_id = %s AND system = %s", [tenant.pk, system], "value", sorted(values), "text"):
            if (key := _identifier_key(system, value)) in wanted:
                holders[key].add(patient_id)
    return holders


def _known_pairs(patient_ids: Sequence[int]) -> dict[tuple[int, int], str]:
    """Status of every review (pending or decided) with one of these patients on either side."""
    known: dict[tuple[int, int], str] = {}
    for column in ("patient_id", "candidate_id"):  # two indexed lookups rather than one OR
        sql = f"SELECT patient_id, candidate_id, status FROM {_quoted(MatchReview._meta.db_table)} WHERE {{match}}"  # noqa: S608
        for a, b, status in _select(sql, [], column, patient_ids):
            known[_pair(a, b)] = status
    return known


def _plan(tenant: Tenant, patient_ids: Sequence[int], link_at: Decimal, review_at: Decimal) -> _Plan:
    plan = _Plan()
    people = plan.people
    people.update(_people(tenant, patient_ids))
    batch = [people[pk] for pk in patient_ids if pk in people and not people[pk].deleted]
    if not batch:
        return plan
    batch_ids = {person.id for person in batch}

    # Who else holds the batch's person-unique identifiers (looked up by value, the indexed column).
    identifiers = _identifiers_of(batch_ids)
    wanted = {(name, value) for pk in batch_ids for name, values in identifiers[pk].items() for value in values}
    holders = _holders(tenant, wanted)

    # Candidates blocked by birth date: the same date and the day-month swapped one.
    dates = {day for person in batch for day in (person.birth_date, _swapped(person.birth_date)) if day is not None}
    people.update({pk: person for pk, person in _born_on(tenant, sorted(dates)).items() if pk not in people})
    missing = {pk for keys in holders.values() for pk in keys} - people.keys()
    people.update(_people(tenant, sorted(missing)))
    by_date: dict[date, list[_Person]] = defaultdict(list)
    for person in people.values():
        if person.birth_date is not None and not person.deleted:
            by_date[person.birth_date].append(person)
    # The candidates worth scoring: a pair whose score without identifiers stays under the review
    # threshold needs no more reads (most pairs of a birth date are strangers).
    scorable: dict[int, list[_Person]] = {}
    for person in batch:
        if person.birth_date is None:
            continue
        swapped = _swapped(person.birth_date)
        scorable[person.id] = [
            candidate for candidate in itertools.chain(by_date[person.birth_date], by_date[swapped] if swapped else ())
            if candidate.id != person.id and _may_reach(person, candidate, review_at)
        ]
    involved = batch_ids | {pk for keys in holders.values() for pk in keys if pk in people}
    involved.update(candidate.id for candidates in scorable.values() for candidate in candidates)
    identifiers.update(_identifiers_of(involved - batch_ids))

    # Current masters of everyone involved and all patients on them (a group is checked as a
    # whole before it is joined); decided and pending pairs; reviewers' "keep apart"s.
    groups = _Groups()
    node_master: dict[int, int | None] = {}
    master_ids = sorted({people[pk].master_id for pk in involved if people[pk].master_id})
    sql = f"SELECT id, master_id, source_connection_id FROM {_quoted(Patient._meta.db_table)} WHERE {{match}}"  # noqa: S608
    connection_of: dict[int, int] = {}
    for pk, master_id, connection_id in _select(sql, [], "master_id", master_ids):
        plan.members.setdefault(master_id, set()).add(pk)
        node_master[pk] = master_id
        connection_of[pk] = connection_id
    for members in plan.members.values():
        first, *others = sorted(members)
        groups.add(first, connection_of[first], node_master[first])
        for pk in others:
            groups.add(pk, connection_of[pk], node_master[pk], root=first)
    for person in (people[pk] for pk in sorted(involved)):
        if node_master.setdefault(person.id, person.master_id) != person.master_id:
            raise _StalePlan  # moved to another master between our reads: plan again
        groups.add(person.id, person.connection_id, person.master_id)
    known = _known_pairs(sorted(batch_ids))
    with db_connection.cursor() as cursor:
        sql = f"SELECT patient_id, candidate_id FROM {_quoted(MatchReview._meta.db_table)} WHERE tenant_id = %s AND status = %s"  # noqa: S608
        cursor.execute(sql, [tenant.pk, MatchStatus.KEPT_APART.value])
        for a, b in cursor.fetchall():
            groups.keep_apart(a, b)

    def open_pair(a: _Person, b: _Person) -> bool:
        return _pair(a.id, b.id) not in known and groups.find(a.id) != groups.find(b.id)

    def queue(a: _Person, b: _Person, score: MatchScore, *extra: str) -> None:
        key = _pair(a.id, b.id)
        if key not in known and key not in plan.reviews:
            plan.reviews[key] = MatchScore(score.value, [*score.reasons, *extra], [*score.audit_reasons, *extra])

    def link(a: _Person, b: _Person, method: str, score: MatchScore) -> None:
        if refusal := groups.refusal(a.id, b.id):
            queue(a, b, score, refusal)
        else:
            groups.join(a.id, b.id)
            plan.links.append(_Link(a, b, method, score.value if method == "score" else None))

    for person in batch:
        own = identifiers.get(person.id, {})
        sharers: dict[int, set[str]] = defaultdict(set)
        for name, values in own.items():
            for value in values:
                for holder in holders[(name, value)] - {person.id}:
                    if holder in people and not people[holder].deleted:
                        sharers[holder].add(name)

        # 1. deterministic, on a shared person-unique identifier
        identified: list[tuple[_Person, MatchScore]] = []
        for holder_id in sorted(sharers):
            holder = people[holder_id]
            if not open_pair(person, holder):
                continue
            score = _score(person, holder, own, identifiers.get(holder_id, {}))
            shared = [f"shares {name}" for name in sorted(sharers[holder_id])]
            if holder.connection_id == person.connection_id:
                queue(person, holder, score, *shared, "same source")
            else:
                identified.append((holder, MatchScore(score.value, [*shared, *score.reasons], [*shared, *score.audit_reasons])))
        if identified:
            roots = {groups.find(person.id)} | {groups.find(holder.id) for holder, _ in identified}
            if sum(len(groups.members[root]) > 1 for root in roots) > 1:
                for holder, score in identified:
                    queue(person, holder, score, "identifier already on different master patients")
            else:
                for holder, score in identified:
                    if groups.find(holder.id) != groups.find(person.id):
                        link(person, holder, "identifier", score)
            continue

        # 2. scored, against candidates of the same or the swapped birth date
        if person.birth_date is None:
            continue
        scored: list[tuple[MatchScore, _Person]] = []
        for candidate in scorable[person.id]:
            if not open_pair(person, candidate):
                continue
            score = _score(person, candidate, own, identifiers.get(candidate.id, {}))
            if score.value >= review_at:
                scored.append((score, candidate))
        scored.sort(key=lambda item: (-item[0].value, item[1].id))
        for score, candidate in scored:
            if groups.find(candidate.id) == groups.find(person.id):
                continue
            if candidate.connection_id == person.connection_id:
                queue(person, candidate, score, "same source")
            elif score.value >= link_at:
                link(person, candidate, "score", score)
            else:
                queue(person, candidate, score)

    # 3. what each group of the batch needs: one surviving master (the largest, else a new one)
    winners: dict[int, _NewMaster | int] = {}
    for root in sorted({groups.find(person.id) for person in batch}):
        masters = groups.masters[root]
        masterless = sorted(pk for pk in groups.members[root] if node_master.get(pk) is None)
        if not masterless and len(masters) <= 1:
            if masters:
                winners[root] = next(iter(masters))
            continue
        winner: _NewMaster | int
        if masters:
            winner = max(masters, key=lambda pk: (len(plan.members[pk]), -pk))
            plan.moves.update(dict.fromkeys(masters - {winner}, winner))
        else:
            winner = _NewMaster()
            plan.new_masters.append(winner)
        winners[root] = winner
        plan.assign.update(dict.fromkeys(masterless, winner))
    plan.link_master = [winners[groups.find(item.a.id)] for item in plan.links]
    touched = {pk for pk in (*plan.assign.values(), *plan.moves.values(), *plan.moves) if isinstance(pk, int)}
    plan.members = {pk: plan.members[pk] for pk in touched}
    return plan


# --- applying --------------------------------------------------------------------------------------


def _master_pk(master: _NewMaster | int) -> int:
    return master if isinstance(master, int) else master.pk


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)  # SQLite stores a uuid as 32 hex digits


def _for_update() -> str:
    """Row locks where the database has them (SQLite locks the whole database at the first write)."""
    return " FOR UPDATE" if db_connection.features.has_select_for_update else ""


def _lock_and_check(tenant: Tenant, plan: _Plan) -> dict[int, UUID]:
    """Lock every existing master the plan touches, then the patients it assigns, and check that
    nobody changed them since the plan read them (while we hold the locks, nobody can): the masters
    keep their members and the patients still have no master. Returns the masters' public ids."""
    masters, patients = _quoted(MasterPatient._meta.db_table), _quoted(Patient._meta.db_table)
    master_ids = sorted(plan.members)
    sql = f"SELECT id, public_id FROM {masters} WHERE tenant_id = %s AND {{match}} ORDER BY id{_for_update()}"  # noqa: S608
    public_ids = {pk: _uuid(public_id) for pk, public_id in _select(sql, [tenant.pk], "id", master_ids)}
    if len(public_ids) != len(master_ids):
        raise _StalePlan
    current: dict[int, set[int]] = defaultdict(set)
    for pk, master_id in _select(f"SELECT id, master_id FROM {patients} WHERE {{match}}", [], "master_id", master_ids):  # noqa: S608
        current[master_id].add(pk)
    if any(current[pk] != members for pk, members in plan.members.items()):
        raise _StalePlan
    assigned = sorted(plan.assign)
    sql = f"SELECT master_id FROM {patients} WHERE {{match}} ORDER BY id{_for_update()}"  # noqa: S608
    rows = list(_select(sql, [], "id", assigned))
    if len(rows) != len(assigned) or any(master_id is not None for (master_id,) in rows):
        raise _StalePlan
    return public_ids


def _create_masters(tenant: Tenant, masters: list[_NewMaster], now: datetime) -> None:
    """Insert the new masters in one statement and learn their ids (RETURNING: both databases)."""
    if not masters:
        return
    public_ids = uuid7s(len(masters))
    sql = f"INSERT INTO {_quoted(MasterPatient._meta.db_table)} (tenant_id, public_id, created_at) "  # noqa: S608
    with db_connection.cursor() as cursor:
        if db_connection.vendor == "postgresql":
            sql += "SELECT %s, u, %s FROM unnest(%s::uuid[]) AS u RETURNING id, public_id"
            cursor.execute(sql, [tenant.pk, now, public_ids])
        else:  # one JSON array parameter, not 3 per row against SQLite's parameter cap ("WHERE true": SQLite's parser wants it)
            sql += "SELECT %s, value, %s FROM json_each(%s) WHERE true RETURNING id, public_id"
            cursor.execute(sql, [tenant.pk, db_connection.ops.adapt_datetimefield_value(now), json.dumps([u.hex for u in public_ids])])
        pks = {_uuid(public_id): pk for pk, public_id in cursor.fetchall()}
    for master, public_id in zip(masters, public_ids, strict=True):
        master.pk, master.public_id = pks[public_id], public_id


def _merge_masters(moves: dict[int, int]) -> None:
    """Move the patients of each absorbed master to its survivor, then delete the absorbed masters."""
    if not moves:
        return
    patients = _quoted(Patient._meta.db_table)
    with db_connection.cursor() as cursor:
        if db_connection.vendor == "postgresql":
            cursor.execute(
                f"UPDATE {patients} SET master_id = u.survivor FROM unnest(%s::bigint[], %s::bigint[]) AS u(absorbed, survivor) "  # noqa: S608
                f"WHERE {patients}.master_id = u.absorbed",
                [list(moves), list(moves.values())],
            )
        else:
            cursor.executemany(f"UPDATE {patients} SET master_id = %s WHERE master_id = %s", [(b, a) for a, b in moves.items()])  # noqa: S608
        for condition, params in in_values("id", sorted(moves)):
            cursor.execute(f"DELETE FROM {_quoted(MasterPatient._meta.db_table)} WHERE {condition}", params)  # noqa: S608


def _queue_reviews(tenant: Tenant, reviews: dict[tuple[int, int], MatchScore], now: datetime) -> list[tuple[int, int, int]]:
    """Create the pending reviews; returns (review pk, patient, candidate) of those this run wrote:
    one row per pair, whoever writes it first (a concurrent run may queue it too)."""
    if not reviews:
        return []
    MatchReview.objects.bulk_create(
        [MatchReview(tenant=tenant, patient_id=a, candidate_id=b, score=score.value, reasons=score.reasons, created_at=now)
         for (a, b), score in reviews.items()],
        batch_size=CHUNK, ignore_conflicts=True,
    )
    created: list[tuple[int, int, int]] = []
    for chunk in _chunks(sorted({a for a, _ in reviews})):
        rows = MatchReview.objects.filter(tenant=tenant, patient_id__in=chunk, created_at=now, status=MatchStatus.PENDING).order_by("pk")
        created.extend((pk, a, b) for pk, a, b in rows.values_list("pk", "patient_id", "candidate_id") if (a, b) in reviews)
    return created


def _apply(tenant: Tenant, plan: _Plan) -> IdentityReport:
    now = timezone.now()
    public_ids = _lock_and_check(tenant, plan)
    _create_masters(tenant, plan.new_masters, now)
    public_ids.update((master.pk, master.public_id) for master in plan.new_masters)
    update_rows(Patient, ["master_id"], [(_master_pk(master), pk) for pk, master in sorted(plan.assign.items())])
    _merge_masters(dict(sorted(plan.moves.items())))
    created = _queue_reviews(tenant, plan.reviews, now)

    # Audit every decision: ids, scores and name-free reasons only.
    people = plan.people
    master_type, review_type = object_type_of(MasterPatient), object_type_of(MatchReview)
    events: list[tuple[str, str, Any, dict[str, Any]]] = []
    for item, master in zip(plan.links, plan.link_master, strict=True):
        events.append(("update", master_type, public_ids[_master_pk(master)], {
            "patients": [str(item.a.public_id), str(item.b.public_id)], "method": item.method,
            "score": None if item.score is None else str(item.score),
        }))
    assigned: dict[int, list[str]] = defaultdict(list)
    for pk, target in plan.assign.items():
        assigned[_master_pk(target)].append(str(people[pk].public_id))
    for master in plan.new_masters:
        events.append(("create", master_type, master.public_id, {"patients": sorted(assigned[master.pk])}))
    for absorbed, survivor in sorted(plan.moves.items()):
        events.append(("delete", master_type, public_ids[absorbed], {
            "merged_into": str(public_ids[survivor]), "patients_moved": len(plan.members[absorbed]),
        }))
    for pk, a, b in created:
        score = plan.reviews[(a, b)]
        events.append(("create", review_type, pk, {
            "patients": [str(people[a].public_id), str(people[b].public_id)], "score": str(score.value),
            "reasons": score.audit_reasons,
        }))
    record_audits(events, tenant=tenant, now=now)
    return IdentityReport(linked=len(plan.links), queued=len(created), new_masters=len(plan.new_masters))


def link_patients(tenant: Tenant, patient_ids: Iterable[int]) -> IdentityReport:
    """Give every live patient among `patient_ids` (created or updated by an upsert) its master:
    link, queue for review, or a new master. Tombstoned patients and ids of other tenants are
    skipped. Raises IdentityBusy if concurrent runs kept invalidating the plan."""
    ids = sorted(set(patient_ids))
    link_at, review_at = link_threshold(), review_threshold()
    for _attempt in range(MAX_ATTEMPTS):
        try:
            with transaction.atomic():
                return _apply(tenant, _plan(tenant, ids, link_at, review_at))
        except _StalePlan:
            continue
    raise IdentityBusy(f"identity links of {len(ids)} patients kept changing under concurrent runs; retry later")


# --- decisions by a person -------------------------------------------------------------------------


def _lock_masters_of(patient_ids: Sequence[int]) -> dict[int, int | None]:
    """Lock the patients' current masters (and the patients), in pk order; return patient -> master."""
    for _attempt in range(MAX_ATTEMPTS):
        seen = dict(Patient.objects.filter(pk__in=patient_ids).values_list("pk", "master_id"))
        master_ids = sorted({pk for pk in seen.values() if pk is not None})
        locked = list(MasterPatient.objects.select_for_update().filter(pk__in=master_ids).order_by("pk").values_list("pk", flat=True))
        current = dict(Patient.objects.select_for_update().filter(pk__in=patient_ids).order_by("pk").values_list("pk", "master_id"))
        if current == seen and len(locked) == len(master_ids):
            return current
    raise IdentityBusy("the patients' masters kept changing under concurrent runs; retry later")


def _merge(tenant: Tenant, a: int, b: int) -> MasterPatient:
    """Put patients a and b on one master (the larger of theirs); the caller holds a transaction."""
    masters = _lock_masters_of([a, b])
    ids = {pk for pk in masters.values() if pk is not None}
    sizes = dict(Patient.objects.filter(master_id__in=ids).values("master_id").annotate(n=models.Count("pk")).values_list("master_id", "n"))
    both = set(Patient.objects.filter(master_id__in=ids).values_list("pk", flat=True)) | {a, b}
    side_a = set(Patient.objects.filter(master_id=masters[a]).values_list("pk", flat=True)) if masters[a] else set()
    side_a.add(a)
    apart = MatchReview.objects.filter(status=MatchStatus.KEPT_APART, patient_id__in=both, candidate_id__in=both)
    for x, y in apart.values_list("patient_id", "candidate_id"):
        if (x in side_a) != (y in side_a):
            raise ValueError("Linking would join two patients that a reviewer kept apart; keep this pair apart or undo that decision first.")
    if not ids:
        survivor = MasterPatient.objects.create(tenant=tenant)
    else:
        survivor = MasterPatient.objects.get(pk=max(ids, key=lambda pk: (sizes.get(pk, 0), -pk)))
    absorbed = ids - {survivor.pk}
    Patient.objects.filter(Q(pk__in=[a, b]) | Q(master_id__in=absorbed)).update(master=survivor)
    MasterPatient.objects.filter(pk__in=absorbed).delete()
    return survivor


def _separate(tenant: Tenant, patient_id: int, candidate_id: int) -> None:
    """Make sure the two are on different masters: the candidate leaves a shared master alone."""
    masters = _lock_masters_of([patient_id, candidate_id])
    for pk in (patient_id, candidate_id):
        if masters[pk] is None:
            Patient.objects.filter(pk=pk).update(master=MasterPatient.objects.create(tenant=tenant))
    if masters[patient_id] is not None and masters[patient_id] == masters[candidate_id]:
        Patient.objects.filter(pk=candidate_id).update(master=MasterPatient.objects.create(tenant=tenant))


def decide_review(review: MatchReview, *, link: bool, user: AbstractBaseUser | None) -> None:
    """A person's decision on a pending review: link (merge the two masters) or keep apart (never
    queued or linked automatically again; the two end on different masters). Audited.

    Raises ValueError if the review was already decided, or if linking would join two patients a
    reviewer kept apart.
    """
    with transaction.atomic():
        locked = MatchReview.objects.select_for_update().get(pk=review.pk)
        if locked.status != MatchStatus.PENDING:
            raise ValueError(f"Match review {locked.pk} was already decided ({locked.get_status_display()}); it cannot be decided again.")
        public = dict(Patient.objects.filter(pk__in=[locked.patient_id, locked.candidate_id]).values_list("pk", "public_id"))
        detail: dict[str, Any] = {
            "patients": [str(public[locked.patient_id]), str(public[locked.candidate_id])], "score": str(locked.score),
        }
        if link:
            survivor = _merge(locked.tenant, locked.patient_id, locked.candidate_id)
            locked.status = MatchStatus.LINKED
            detail.update(decision="linked", master=str(survivor.public_id))
        else:
            _separate(locked.tenant, locked.patient_id, locked.candidate_id)
            locked.status = MatchStatus.KEPT_APART
            detail.update(decision="kept_apart")
        locked.decided_by = user if getattr(user, "pk", None) else None
        locked.decided_at = timezone.now()
        locked.save(update_fields=["status", "decided_by", "decided_at"])
        record_audit("update", object_type=object_type_of(MatchReview), object_id=locked.pk, tenant=locked.tenant, user=user, detail=detail)
    review.status, review.decided_by, review.decided_at = locked.status, locked.decided_by, locked.decided_at


def link_unlinked_patients(connection, batch: int = 2000, *, changed_since: datetime | None = None) -> IdentityReport:
    """Link the connection's live patients that have no master yet (a crash between a page's
    commit and its identity pass leaves some). Bounded: at most 50 batches per call.

    With `changed_since` (a sync run's start), also re-match the live patients updated since then:
    a sync job calls this once after its run instead of linking page by page. The ids are read
    once up front, so the call is bounded by them."""
    live = Patient.objects.filter(source_connection=connection, deleted_at__isnull=True)
    total = IdentityReport()
    if changed_since is None:
        for _ in range(50):
            ids = list(live.filter(master__isnull=True).order_by("pk").values_list("pk", flat=True)[:batch])
            if not ids:
                break
            _add_report(total, link_patients(connection.tenant, ids))
        return total
    ids = list(live.filter(Q(master__isnull=True) | Q(updated_at__gte=changed_since)).order_by("pk").values_list("pk", flat=True))
    for chunk in _chunks(ids, batch):
        _add_report(total, link_patients(connection.tenant, chunk))
    return total


def _add_report(total: IdentityReport, report: IdentityReport) -> None:
    total.linked += report.linked
    total.queued += report.queued
    total.new_masters += report.new_masters
