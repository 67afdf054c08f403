"""Figures for 835 remittances (issue 6): parsing against pyx12 and a bare split, then import + match + post.

    .venv/bin/python bench/era_import.py [--claims 10000] [--db sqlite|postgres] [--profile] [--parse-only]

One run, one process:

1. A realistic, valid 835 (005010X221A1) of --claims claims is generated as text (seeded): one
   interchange, one GS, one ST; BPR/TRN/REF/DTM, payer and payee loops, one LX, then per claim a
   CLP, NM1*QC, DTM*232/233 and 1-3 SVC lines, each with DTM*472, CAS CO (and CAS PR deductible,
   coinsurance or copay on paid lines), REF*6R, AMT*B6 (5% of the claims are denied: CAS CO*50
   and LQ*HE); a PLB (interest and a recoupment) at the end, and BPR02 = sum CLP04 - sum PLB so the
   remittance balances. pyx12 validates the file with the 835 map it ships (835.5010.X221.A1.xml).
2. On that same text, best of 3 (pyx12's validation only once when it takes more than 10 s):
   (a) the bare split, the floor: delimiters read from the ISA, `text.split(terminator)`, then
       `.split(element)` per segment (with the garbage collector paused, as parse_835 does; the
       time with it running prints too);
   (b) `formats.x12.tokenizer.tokenize`; (c) `formats.x12.era835.parse_835`;
   (d) pyx12's cheapest full read: `pyx12.x12file.X12Reader` iterating every segment (it splits
       segments and elements and checks the envelope counts);
   (e) pyx12's validation, `pyx12.x12n_document.x12n_document` (what `x12valid` does), no reports.
   Goals (the issue): parse_835 at least 10x faster than pyx12 (verdict against both (d) and
   (e)), and within 2x of the bare split.
3. A scratch database (an SQLite file in a temporary directory, or `switchboard_bench_era` on the
   local PostgreSQL, created here and dropped at the end) is migrated; one tenant, a WellSky
   connection, patients through `upsert_records` (the generator of bench/upsert_patients.py; each
   NM1*QC carries its patient's name and MBI) and one submitted Claim per CLP with its ClaimLines
   (CLM01 = CLP01, so every claim matches exactly). PostgreSQL's tables are then analyzed (the
   local server runs with autovacuum off; a database in use has statistics). None of this is timed.
4. `reconciliation.remittances.import_remittance_file` on the text: parse + store + match + post in
   one transaction, timed as a whole: claims/s. The phases (parse, store, match, post, describe)
   and the SQL statements it ran (count and time in `execute`, by statement and table) print
   too; then the stored rows are checked (every claim matched and posted, to the cent, statuses,
   balanced) and a re-import of the same file is timed (it must change nothing).
   With --profile the import is repeated for a second tenant set up alike, under cProfile, and
   the top functions print. --parse-only stops after step 2 (no database, no Django settings).

Record the figures in bench/README.md.
"""

from __future__ import annotations

import argparse
import cProfile
import gc
import io
import os
import pstats
import random
import re
import sys
import tempfile
import time
import unicodedata
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sync_throughput import POSTGRES_SERVER, _verdict  # noqa: E402
from bench.upsert_patients import MBI_SYSTEM, make_patients  # noqa: E402

POSTGRES_DATABASE = "switchboard_bench_era"
SEED = 20260601
PYX12_GOAL = 10.0  # pyx12 time / parse_835 time, at least
SPLIT_GOAL = 2.0  # parse_835 time / bare split time, at most
CLAIMS_PER_PATIENT = 4  # home health: a patient has a claim a month or so
PAYEE_NPI = "1234567893"
PAYMENT_DATE = date(2025, 3, 14)

# --- the 835 -----------------------------------------------------------------------------------

# Home health and hospice HCPCS/CPT codes, the modifier sometimes sent, and the unit price in cents.
_SERVICES = (
    ("G0299", "", 4200), ("G0300", "", 3600), ("G0151", "GP", 5100), ("G0152", "GO", 5000), ("G0153", "GN", 5200),
    ("G0156", "", 2400), ("99509", "", 3100), ("T1019", "U1", 1100), ("S9123", "", 3900), ("97110", "GP", 2900),
)
DENIED_SHARE = 0.05


@dataclass
class Line:
    code: str
    modifier: str
    units: int
    charge: int  # cents, as all amounts here
    paid: int
    contractual: int
    patient: int  # patient responsibility
    patient_reason: str  # CARC 1 deductible, 2 coinsurance, 3 copay
    day: date


@dataclass
class ClaimSpec:
    pcn: str
    patient: int  # index into the generated patients
    denied: bool
    lines: list[Line] = field(default_factory=list)

    @property
    def charge(self) -> int:
        return sum(line.charge for line in self.lines)

    @property
    def paid(self) -> int:
        return sum(line.paid for line in self.lines)

    @property
    def patient_responsibility(self) -> int:
        return sum(line.patient for line in self.lines)


@dataclass
class Era:
    text: str
    claims: list[ClaimSpec]
    patients: list[dict[str, Any]]
    segments: int
    payment: int
    provider_adjustments: int
    adjustments: int  # CAS triples
    trace_number: str


def amount(cents: int) -> str:
    """An X12 decimal: no trailing zeros after the point, no point for whole amounts."""
    sign = "-" if cents < 0 else ""
    whole, part = divmod(abs(cents), 100)
    if part == 0:
        return f"{sign}{whole}"
    return f"{sign}{whole}.{part // 10}" if part % 10 == 0 else f"{sign}{whole}.{part:02d}"


def _ascii_upper(value: str) -> str:
    return unicodedata.normalize("NFKD", value).encode("ascii", "ignore").decode().upper().replace("'", "")


def _line(rng: random.Random, day: date, denied: bool) -> Line:
    code, modifier, price = rng.choice(_SERVICES)
    units = rng.choice((1, 1, 1, 2, 4, 8)) if code in ("T1019", "97110") else 1
    charge = units * price
    if denied:
        return Line(code, modifier, units, charge, 0, charge, 0, "", day)
    allowed = charge * rng.randint(55, 92) // 100
    kind = rng.choices(("", "1", "2", "3"), weights=(55, 10, 25, 10))[0]
    patient = {"": 0, "1": allowed // 2, "2": allowed // 5, "3": min(allowed, 2000)}[kind]
    return Line(code, modifier, units, charge, allowed - patient, charge - allowed, patient, kind, day)


def make_era(n_claims: int, seed: int = SEED) -> Era:
    """An 835 paying `n_claims` claims of n_claims / 4 patients, balanced, valid for pyx12."""
    rng = random.Random(seed)
    patients = make_patients(max(1, n_claims // CLAIMS_PER_PATIENT), seed)
    claims = []
    for index in range(n_claims):
        denied = rng.random() < DENIED_SHARE
        start = date(2025, 1, 2) + timedelta(days=rng.randrange(60))
        spec = ClaimSpec(pcn=f"SB{index + 1:09d}", patient=rng.randrange(len(patients)), denied=denied)
        for offset in sorted(rng.sample(range(14), rng.choice((1, 1, 2, 2, 3)))):
            spec.lines.append(_line(rng, start + timedelta(days=offset), denied))
        claims.append(spec)

    paid = sum(claim.paid for claim in claims)
    interest, recoupment = 1234, min(25000, paid // 10)  # PLB: L6 interest is sent negative; WO withholds
    provider_adjustments = -interest + recoupment
    payment = paid - provider_adjustments
    trace = f"EFT{PAYMENT_DATE:%Y%m%d}{seed % 100000:05d}"
    day = f"{PAYMENT_DATE:%Y%m%d}"

    body = [
        f"BPR*I*{amount(payment)}*C*ACH*CCP*01*021000021*DA*123456789*1512345678**01*031100209*DA*987654321*{day}",
        f"TRN*1*{trace}*1512345678",
        "REF*EV*SWITCHBOARD",
        f"DTM*405*{PAYMENT_DATE - timedelta(days=1):%Y%m%d}",
        "N1*PR*ACME HEALTH PLAN", "N3*100 INSURANCE WAY", "N4*HARTFORD*CT*06101", "REF*2U*ACME01",
        "PER*BL*PROVIDER SERVICES*TE*8005551234",
        f"N1*PE*SUNRISE HOME HEALTH*XX*{PAYEE_NPI}", "N3*12 MAIN ST", "N4*SPRINGFIELD*IL*62701", "REF*TJ*371234567",
        "LX*1",
    ]
    adjustments = 0
    for index, claim in enumerate(claims):
        patient = patients[claim.patient]
        mbi = next(i["value"] for i in patient["identifiers"] if i["system"] == MBI_SYSTEM)
        status = "4" if claim.denied else "1"
        body += [
            f"CLP*{claim.pcn}*{status}*{amount(claim.charge)}*{amount(claim.paid)}*{amount(claim.patient_responsibility)}"
            f"*MB*ACM25{index + 1:010d}*12*1",
            f"NM1*QC*1*{_ascii_upper(patient['family_name'])}*{_ascii_upper(patient['given_names'][0])}****MI*{mbi}",
            f"DTM*232*{claim.lines[0].day:%Y%m%d}",
            f"DTM*233*{claim.lines[-1].day:%Y%m%d}",
        ]
        for number, line in enumerate(claim.lines, start=1):
            procedure = f"HC:{line.code}:{line.modifier}" if line.modifier else f"HC:{line.code}"
            units = f"**{line.units}" if line.units != 1 else ""
            body += [f"SVC*{procedure}*{amount(line.charge)}*{amount(line.paid)}{units}", f"DTM*472*{line.day:%Y%m%d}"]
            if claim.denied:
                body.append(f"CAS*CO*50*{amount(line.contractual)}")
                adjustments += 1
            else:
                if line.contractual:
                    body.append(f"CAS*CO*45*{amount(line.contractual)}")
                    adjustments += 1
                if line.patient:
                    body.append(f"CAS*PR*{line.patient_reason}*{amount(line.patient)}")
                    adjustments += 1
            body.append(f"REF*6R*{claim.pcn}L{number}")
            if claim.denied:
                body.append("LQ*HE*N130")
            else:
                body.append(f"AMT*B6*{amount(line.charge - line.contractual)}")
    body.append(f"PLB*{PAYEE_NPI}*20251231*L6:{claims[0].pcn}*{amount(-interest)}*WO:ACM2024OVERPAY01*{amount(recoupment)}")

    segments = ["ST*835*0001", *body, f"SE*{len(body) + 2}*0001"]
    envelope = [
        "ISA*00*          *00*          *ZZ*ACMEHEALTH     *ZZ*SWITCHBOARD    *250314*1200*^*00501*000000501*0*P*:",
        f"GS*HP*ACMEHEALTH*SWITCHBOARD*{day}*1200*501*X*005010X221A1",
        *segments,
        "GE*1*501",
        "IEA*1*000000501",
    ]
    text = "~".join(envelope) + "~"
    return Era(text=text, claims=claims, patients=patients, segments=len(envelope), payment=payment,
               provider_adjustments=provider_adjustments, adjustments=adjustments, trace_number=trace)


# --- parse timings -----------------------------------------------------------------------------

def _best_of(work: Callable[[], Any], repeats: int, slow: float = float("inf")) -> tuple[float, Any, int]:
    """The fastest of `repeats` runs (one run only when the first takes longer than `slow` s)."""
    best, result, runs = float("inf"), None, 0
    for _ in range(repeats):
        gc.collect()  # the previous run's garbage is not this run's cost
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
        runs += 1
        if best > slow:
            break
    return best, result, runs


def bare_split(text: str) -> list[list[str]]:
    from formats.x12.tokenizer import read_delimiters

    delimiters = read_delimiters(text)
    element = delimiters.element
    return [segment.split(element) for segment in text.split(delimiters.segment) if segment]


def bare_split_paused_gc(text: str) -> list[list[str]]:
    from formats.x12.tokenizer import paused_gc

    with paused_gc():
        return bare_split(text)


def pyx12_read(text: str) -> tuple[int, list]:
    """Every segment through pyx12's X12Reader (its segment and element split, envelope counts)."""
    import pyx12.x12file

    reader = pyx12.x12file.X12Reader(io.StringIO(text))
    count = sum(1 for _ in reader)
    reader.cleanup()
    return count, reader.pop_errors()


def pyx12_validate(text: str, report: io.StringIO | None = None) -> bool:
    import pyx12.params
    import pyx12.x12n_document

    return pyx12.x12n_document.x12n_document(
        param=pyx12.params.params(), src_file=io.StringIO(text), fd_997=None, fd_html=None, fd_xmldoc=None, fd_json=report,
    )


def _pyx12_messages(text: str, limit: int = 10) -> list[str]:
    import json

    report = io.StringIO()
    pyx12_validate(text, report)
    messages: list[str] = []

    def collect(node: Any) -> None:
        if isinstance(node, dict):
            if "err_str" in node:
                messages.append(f"{node.get('err_cde')}: {node['err_str']}")
            for value in node.values():
                collect(value)
        elif isinstance(node, list):
            for value in node:
                collect(value)

    collect(json.loads(report.getvalue() or "{}"))
    return messages[:limit]


def parse_figures(era: Era, repeats: int) -> bool:
    """Time the bare split, tokenize, parse_835 and pyx12 on the same text; print ratios and verdicts."""
    import logging

    from formats.x12.era835 import balance_difference, parse_835
    from formats.x12.tokenizer import tokenize

    logging.getLogger("pyx12").setLevel(logging.ERROR)
    text = era.text
    ok = True
    # Check the generated file before timing anything: pyx12 must call it valid, parse_835 must read it all.
    if not pyx12_validate(text):
        # Small files only: the JSON report of a big invalid file is slow; the generator is the same at any size.
        print("  pyx12 finds the generated 835 invalid:", *_pyx12_messages(make_era(50).text), sep="\n    ")
        ok = False
    [remittance] = parse_835(text)
    if len(remittance.claims) != len(era.claims) or balance_difference(remittance) != 0:
        raise SystemExit(f"parse_835 read {len(remittance.claims)} claims, balance difference {balance_difference(remittance)}")
    del remittance

    split_s, split, _ = _best_of(lambda: bare_split_paused_gc(text), repeats)
    split_gc_s, _, _ = _best_of(lambda: bare_split(text), repeats)
    tokenize_s, tokens, _ = _best_of(lambda: tokenize(text), repeats)
    parse_s, _, _ = _best_of(lambda: parse_835(text), repeats)
    reader_s, (reader_segments, reader_errors), _ = _best_of(lambda: pyx12_read(text), repeats)
    validate_s, valid, validate_runs = _best_of(lambda: pyx12_validate(text), repeats, slow=10.0)
    if not (len(split) == len(tokens) == reader_segments == era.segments) or reader_errors or not valid:
        print(f"  segment counts differ or pyx12 complained: split {len(split)}, tokenize {len(tokens)}, "
              f"pyx12 {reader_segments} ({reader_errors[:3]}), generated {era.segments}; pyx12 valid: {valid}")
        ok = False
    del split, tokens
    gc.collect()

    print(f"  835: {len(era.claims):,} claims, {era.segments:,} segments, {len(text) / 1e6:.1f} MB; pyx12 calls it valid: {valid}")
    print(f"  {'parse (best of ' + str(repeats) + ')':<58}{'seconds':>9}{'claims/s':>12}{'x parse_835':>13}")
    rows = (
        ("(a) bare split: ISA delimiters, split, split (gc paused)", split_s),
        ("    the same with the garbage collector running", split_gc_s),
        ("(b) formats.x12.tokenizer.tokenize", tokenize_s),
        ("(c) formats.x12.era835.parse_835", parse_s),
        ("(d) pyx12 X12Reader, every segment", reader_s),
        (f"(e) pyx12 x12n_document validation{'' if validate_runs == repeats else f' (best of {validate_runs})'}", validate_s),
    )
    for label, seconds in rows:
        print(f"  {label:<58}{seconds:>9.3f}{len(era.claims) / seconds:>12,.0f}{seconds / parse_s:>13.2f}")
    over_split = parse_s / split_s
    print(f"  parse_835 vs pyx12 X12Reader: {reader_s / parse_s:.1f}x faster (goal >= {PYX12_GOAL:.0f}x) {_verdict(reader_s / parse_s >= PYX12_GOAL)}")
    print(f"  parse_835 vs pyx12 validation: {validate_s / parse_s:.1f}x faster (goal >= {PYX12_GOAL:.0f}x) {_verdict(validate_s / parse_s >= PYX12_GOAL)}")
    print(f"  parse_835 vs bare split: {over_split:.2f}x its time (goal <= {SPLIT_GOAL:.0f}x) {_verdict(over_split <= SPLIT_GOAL)}"
          f"; {parse_s / split_gc_s:.2f}x the split with the collector running")
    sys.stdout.flush()
    return ok


# --- the database ------------------------------------------------------------------------------

def _environment(database: str, scratch: Path) -> None:
    """Settings for a scratch database; the embedded profile with DEBUG off (no query log)."""
    for name in ("HUB_PROFILE", "SECRET_KEY", "DRAMATIQ_BROKER_URL", "CACHE_URL"):
        os.environ.pop(name, None)
    os.environ.update({"DJANGO_SETTINGS_MODULE": "hub.settings", "HUB_VAR_DIR": str(scratch), "DEBUG": "false"})
    if database == "sqlite":
        os.environ["DATABASE_URL"] = f"sqlite:///{scratch / 'bench.sqlite3'}"
    else:
        _admin(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)", f"CREATE DATABASE {POSTGRES_DATABASE}")
        os.environ["DATABASE_URL"] = f"{POSTGRES_SERVER}/{POSTGRES_DATABASE}"


def _admin(*statements: str) -> None:
    import psycopg

    with psycopg.connect(f"{POSTGRES_SERVER}/postgres", autocommit=True) as admin:
        for statement in statements:
            admin.execute(statement)


def setup_tenant(era: Era, slug: str) -> Any:
    """A tenant with the 835's patients (through the upsert engine) and one submitted claim per CLP."""
    from canonical.models import Patient
    from canonical.upsert import upsert_records
    from reconciliation.choices import ClaimStatus
    from reconciliation.models import Claim, ClaimLine
    from tenants.models import Connection, Tenant

    tenant = Tenant.objects.create(slug=slug, name=f"Bench {slug}", timezone="UTC")
    connection = Connection.objects.create(tenant=tenant, vendor="wellsky", display_name="era bench", base_url="https://example.invalid")
    for start in range(0, len(era.patients), 1000):
        result = upsert_records("patient", era.patients[start : start + 1000], tenant=tenant, connection=connection)
        if result.rejected:
            raise SystemExit(f"patients rejected: {result.rejected[:3]}")
    ids = dict(Patient.objects.filter(tenant=tenant).values_list("external_id", "id"))
    submitted = PAYMENT_DATE - timedelta(days=30)
    for start in range(0, len(era.claims), 1000):
        specs = era.claims[start : start + 1000]
        rows = Claim.objects.bulk_create([
            Claim(tenant=tenant, patient_id=ids[era.patients[spec.patient]["external_id"]], payer_name="ACME HEALTH PLAN",
                  payer_id="ACME01", patient_control_number=spec.pcn, place_of_service="12",
                  total_charge=Decimal(spec.charge) / 100, status=ClaimStatus.SUBMITTED)
            for spec in specs
        ])
        ClaimLine.objects.bulk_create([
            ClaimLine(claim=row, position=position, procedure_code=line.code, modifiers=[line.modifier] if line.modifier else [],
                      units=line.units, charge=Decimal(line.charge) / 100, service_date=line.day,
                      line_control_number=f"{spec.pcn}L{position}")
            for row, spec in zip(rows, specs, strict=True)
            for position, line in enumerate(spec.lines, start=1)
        ])
    Claim.objects.filter(tenant=tenant).update(submitted_at=datetime.combine(submitted, datetime.min.time(), tzinfo=UTC))
    return tenant


def _analyze(database: str) -> None:
    if database == "postgres":
        from django.db import connection as db

        with db.cursor() as cursor:
            cursor.execute("ANALYZE")


# --- instruments -------------------------------------------------------------------------------

_TABLE = re.compile(r'^\s*(?:INSERT INTO|UPDATE)\s+"?(\w+)|\bFROM\s+"?(\w+)', re.IGNORECASE)


class QueryLog:
    """Counts and times (in `execute`) every SQL statement, by verb and table."""

    def __init__(self) -> None:
        self.count: Counter[str] = Counter()
        self.seconds: defaultdict[str, float] = defaultdict(float)

    def __call__(self, execute, sql, params, many, context):  # Django's execute_wrapper signature
        start = time.perf_counter()
        try:
            return execute(sql, params, many, context)
        finally:
            verb = sql.lstrip().split(None, 1)[0].upper() if sql.strip() else "?"
            found = _TABLE.search(sql) if verb in ("INSERT", "UPDATE", "SELECT", "DELETE") else None
            key = f"{verb} {(found.group(1) or found.group(2)) if found else ''}".strip()
            self.count[key] += 1
            self.seconds[key] += time.perf_counter() - start

    def total(self) -> tuple[int, float]:
        return sum(self.count.values()), sum(self.seconds.values())


class GcLog:
    """Time spent in the cyclic garbage collector, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds: defaultdict[int, float] = defaultdict(float)
        self.count: Counter[int] = Counter()
        self._start = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.seconds[info["generation"]] += time.perf_counter() - self._start
            self.count[info["generation"]] += 1

    @contextmanager
    def installed(self) -> Iterator[GcLog]:
        gc.callbacks.append(self)
        try:
            yield self
        finally:
            gc.callbacks.remove(self)


PHASES = ("parse_835", "store", "match_remittance", "post_remittance", "describe", "record_audit")


@contextmanager
def timed_phases() -> Iterator[dict[str, float]]:
    """Time the functions import_remittance_file calls, by wrapping them in its module for a while."""
    import reconciliation.remittances as module

    seconds: dict[str, float] = dict.fromkeys(PHASES, 0.0)
    originals = {name: getattr(module, name) for name in PHASES}

    def wrap(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                seconds[name] += time.perf_counter() - start
        return timed

    for name, function in originals.items():
        setattr(module, name, wrap(name, function))
    try:
        yield seconds
    finally:
        for name, function in originals.items():
            setattr(module, name, function)


def check_import(era: Era, tenant: Any, summary: Any) -> list[str]:
    """What is wrong with the stored import (nothing, when every figure is what the file says)."""
    from django.db.models import Sum

    from reconciliation.choices import ClaimStatus, MatchMethod, MatchStatus
    from reconciliation.models import Adjustment, Claim, Match, Posting, RemittanceClaim, RemittanceLine

    problems = []
    n = len(era.claims)
    [described] = summary.remittances
    expected = {"claims": n, "matched": n, "unmatched": 0, "balanced": True, "difference": "0.00",
                "payment_amount": f"{Decimal(era.payment) / 100:.2f}", "total_paid": f"{Decimal(sum(c.paid for c in era.claims)) / 100:.2f}",
                "provider_adjustments": f"{Decimal(era.provider_adjustments) / 100:.2f}"}
    for key, value in expected.items():
        if described[key] != value:
            problems.append(f"summary {key} = {described[key]!r}, expected {value!r}")
    lines = sum(len(c.lines) for c in era.claims)
    counts = {
        "remittance claims": (RemittanceClaim.objects.filter(remittance__tenant=tenant).count(), n),
        "remittance lines": (RemittanceLine.objects.filter(claim__remittance__tenant=tenant).count(), lines),
        "adjustments": (Adjustment.objects.filter(claim__remittance__tenant=tenant).count(), era.adjustments),
        "exact matches": (Match.objects.filter(tenant=tenant, status=MatchStatus.CONFIRMED, method=MatchMethod.PATIENT_CONTROL_NUMBER).count(), n),
        "postings": (Posting.objects.filter(tenant=tenant).count(), sum(1 for c in era.claims if c.paid) + era.adjustments),
        # Every line balances, so a claim not denied is settled (paid), also when the patient's copay
        # or deductible took it all and the payer paid nothing.
        "paid claims": (Claim.objects.filter(tenant=tenant, status=ClaimStatus.PAID).count(), sum(1 for c in era.claims if not c.denied)),
        "denied claims": (Claim.objects.filter(tenant=tenant, status=ClaimStatus.DENIED).count(), sum(1 for c in era.claims if c.denied)),
        "claims left submitted": (Claim.objects.filter(tenant=tenant, status=ClaimStatus.SUBMITTED).count(), 0),
    }
    problems += [f"{name}: {found:,} stored, expected {wanted:,}" for name, (found, wanted) in counts.items() if found != wanted]
    posted = Posting.objects.filter(tenant=tenant).aggregate(total=Sum("amount"))["total"] or Decimal(0)
    charged = Decimal(sum(c.charge for c in era.claims)) / 100
    if posted != charged:  # every line balances: paid + CO + PR = charge, so the postings add up to the charges
        problems.append(f"postings add up to {posted}, the claims' charges to {charged}")
    return problems


def import_figures(era: Era, database: str, profile: bool, top: int) -> bool:
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection as db

    from reconciliation.models import Posting, RemittanceClaim
    from reconciliation.remittances import import_remittance_file

    call_command("migrate", verbosity=0)
    setup_start = time.perf_counter()
    tenant = setup_tenant(era, "bench")
    _analyze(database)
    setup_s = time.perf_counter() - setup_start
    gc.collect()
    gc.freeze()  # the generated file and setup objects are not the import's garbage to walk

    log, collector = QueryLog(), GcLog()
    with db.execute_wrapper(log), timed_phases() as phases, collector.installed():
        start = time.perf_counter()
        summary = import_remittance_file(tenant=tenant, body=era.text, name="bench.835")
        import_s = time.perf_counter() - start
    problems = check_import(era, tenant, summary)

    before = (RemittanceClaim.objects.count(), Posting.objects.count())
    start = time.perf_counter()
    again = import_remittance_file(tenant=tenant, body=era.text, name="bench.835")
    again_s = time.perf_counter() - start
    if again.new_file or again.remittances != summary.remittances or (RemittanceClaim.objects.count(), Posting.objects.count()) != before:
        problems.append("re-importing the same file changed something")

    n = len(era.claims)
    version = f"SQLite {db.Database.sqlite_version}" if database == "sqlite" else f"PostgreSQL {db.pg_version // 10000}.{db.pg_version % 10000}"
    print(f"\n  import into {database} ({version}); setup (patients, claims, not timed) {setup_s:.1f} s")
    print(f"  import_remittance_file (parse + store + match + post, one transaction): {import_s:.2f} s = {n / import_s:,.0f} claims/s")
    for name in PHASES:
        print(f"    {name:<20}{phases[name]:>8.2f} s{100 * phases[name] / import_s:>6.1f}%")
    queries, query_s = log.total()
    print(f"    {queries:,} SQL statements ({queries / n:.1f} per claim), {query_s:.2f} s in execute ({100 * query_s / import_s:.0f}% of the import):")
    for key, count in log.count.most_common(12):
        print(f"      {count:>8,} x {key:<42}{log.seconds[key]:>7.2f} s")
    gc_s = sum(collector.seconds.values())
    print(f"    garbage collector: {gc_s:.2f} s ({100 * gc_s / import_s:.0f}%) in "
          + ", ".join(f"{collector.count[g]:,} gen-{g} ({collector.seconds[g]:.2f} s)" for g in sorted(collector.count)))
    print(f"  re-import of the same file (changes nothing): {again_s:.2f} s")
    zero_paid = sum(1 for c in era.claims if not c.denied and not c.paid)
    print(f"  stored rows checked: {'all as the file says' if not problems else 'PROBLEMS'} ({zero_paid} claims processed "
          f"with $0 paid, all patient responsibility, are settled too)")
    for problem in problems:
        print(f"    {problem}")
    sys.stdout.flush()

    if profile:
        gc.unfreeze()
        other = setup_tenant(era, "bench-profile")
        _analyze(database)
        gc.collect()
        gc.freeze()
        profiler = cProfile.Profile()
        start = time.perf_counter()
        profiler.runcall(import_remittance_file, tenant=other, body=era.text, name="bench.835")
        print(f"\n  profiled import (second tenant, cProfile overhead included): {time.perf_counter() - start:.2f} s")
        for order in ("cumulative", "tottime"):
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).strip_dirs().sort_stats(order).print_stats(top)
            print(f"  --- top {top} by {order}")
            print("\n".join(line for line in out.getvalue().splitlines() if line.strip() and not line.startswith(("   Ordered", "   List"))))
    db.close()
    return not problems


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=10_000, help="CLP loops in the 835 (default 10000)")
    parser.add_argument("--db", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--repeats", type=int, default=3, help="parse timings: best of this many (default 3)")
    parser.add_argument("--profile", action="store_true", help="repeat the import under cProfile and print the top functions")
    parser.add_argument("--top", type=int, default=30, help="functions printed per profile ordering (default 30)")
    parser.add_argument("--parse-only", action="store_true", help="the parse timings only: no database, import or Django settings")
    args = parser.parse_args(argv)
    if args.claims < 1 or args.repeats < 1:
        parser.error("--claims and --repeats must be positive")

    load = os.getloadavg()
    print(f"835 import bench: {args.claims:,} claims, {'parse only' if args.parse_only else args.db}; "
          f"load average {load[0]:.1f} on {os.cpu_count()} CPUs")
    era = make_era(args.claims)
    if args.parse_only:
        return 0 if parse_figures(era, args.repeats) else 1
    with tempfile.TemporaryDirectory(prefix="sb-bench-era-") as scratch:
        _environment(args.db, Path(scratch))
        try:
            parsed_ok = parse_figures(era, args.repeats)
            imported_ok = import_figures(era, args.db, args.profile, args.top)
        finally:
            if args.db == "postgres":
                _admin(f"DROP DATABASE IF EXISTS {POSTGRES_DATABASE} WITH (FORCE)")
    return 0 if parsed_ok and imported_ok else 1


if __name__ == "__main__":
    sys.exit(main())
