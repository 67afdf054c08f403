"""eClinicalWorks' Bulk Data export (FHIR Bulk Data Access 2.0, as the real one answers it), under the practice's base.

    GET    {base}/Group/all-patients/$export   Prefer: respond-async (required), _type=A,B, _since=<instant>,
    GET    {base}/Patient/$export              _outputFormat=application/fhir+ndjson
                                               -> 202, Content-Location: {base}/bulkstatus/{job}, Retry-After
    GET    {base}/bulkstatus/{job}             202 with X-Progress ("40%") and Retry-After while it runs, then
                                               200 with the manifest {transactionTime, request,
                                               requiresAccessToken: true, output: [{type, url, count}], error: []}
    DELETE {base}/bulkstatus/{job}             cancel (or, once fetched, forget) the export: 202
    GET    {base}/bulkfiles/{job}/{Type}-{n}.ndjson   one output file, application/fhir+ndjson, bearer token needed

One export runs at a time per client: a kick-off while the client's export runs answers 429 ("an export
is already in progress"). An export works in the background: a planning pass walks the practice's
records once (without keeping them) and cuts each type's output into files of
`EClinicalWorks.fhir_export_file_size` resources (10,000), each remembered only as a pair of cursors.
A file is generated when it is downloaded, so an export of 100,000 patients never holds the practice
in memory. It is done when the plan is and the client has polled `fhir_export_polls` times (2) and
`fhir_export_seconds` (0) have passed; Retry-After says `fhir_export_retry_after_s` (2; the real one 120).

Files are rendered from the records as they are when downloaded: a record deleted since the kick-off
is left out, one changed since is served as it is now (the manifest's counts are the kick-off's).
`_since` keeps resources whose record was modified after that instant.
"""

from __future__ import annotations

import logging
import re
import secrets
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import orjson

from sandbox.ecw import fhir
from sandbox.ecw.fhir import KINDS, Cursor, FhirState, Token
from sandbox.server import HttpError, Request, Response
from sandbox.table import stamp_of

if TYPE_CHECKING:
    from sandbox.ecw.vendor import EClinicalWorks

logger = logging.getLogger("sandbox.ecw.bulk")

EXPORT_TYPES = ("Patient", "Coverage", "Practitioner", "Location", "Appointment", "Encounter", "Condition", "Procedure", "Observation")
OUTPUT_FORMATS = ("application/fhir+ndjson", "application/ndjson", "ndjson")
KICK_OFF_PARAMS = frozenset({"_type", "_since", "_outputFormat"})
MAX_EXPORTS_KEPT = 20  # finished exports a vendor remembers (oldest forgotten first)
FILE_NAME = re.compile(r"([A-Z][A-Za-z]{1,40})-(\d{1,7})\.ndjson")
JOB_ID = re.compile(r"[a-f0-9]{16,64}")


@dataclass
class OutputFile:
    type_name: str
    number: int  # from 1, per type
    start: Cursor  # the file's first resource
    end: Cursor  # where the next file starts (exclusive)
    count: int


@dataclass
class Export:
    job_id: str
    client_id: str
    request_url: str
    base: str
    types: list[str]
    since: str  # a table stamp ("" for everything)
    started_at: float  # by the vendor's fhir_clock
    transaction_time: str
    polls_required: int
    seconds_required: float
    retry_after: int
    file_size: int
    status: str = "in-progress"  # in-progress | complete | failed
    polls: int = 0
    planned: bool = False
    work_done: int = 0
    work_total: int = 1
    files: list[OutputFile] = field(default_factory=list)
    error: str = ""
    cancelled: threading.Event = field(default_factory=threading.Event)


def route(vendor: EClinicalWorks, state: FhirState, request: Request, token: Token, base: str, rest: list[str]) -> Response:
    method = request.method
    if rest[-1] == "$export":
        if rest not in (["Patient", "$export"], ["Group", fhir.GROUP_ID, "$export"]):
            if len(rest) == 3 and rest[0] == "Group":
                raise HttpError(404, "not_found", f"no Group/{rest[1][:64]}; export Group/{fhir.GROUP_ID}")
            raise HttpError(404, "not_found", f"this server exports at Group/{fhir.GROUP_ID}/$export and Patient/$export only")
        fhir._only(method, "GET")
        return kick_off(vendor, state, request, token, base, rest)
    if rest[0] == "bulkstatus" and len(rest) == 2:
        if method == "DELETE":
            return cancel(state, token, rest[1])
        fhir._only(method, "GET")
        return status(vendor, state, token, rest[1])
    if rest[0] == "bulkfiles" and len(rest) == 3:
        fhir._only(method, "GET")
        return download(vendor, state, token, rest[1], rest[2])
    raise HttpError(404, "not_found", f"no such path {request.path[:200]}")


# --- kick-off -------------------------------------------------------------------------------------------------
def _types(params: dict[str, str], token: Token) -> list[str]:
    readable = [t for t in EXPORT_TYPES if token.types is None or t in token.types]
    raw = params.get("_type")
    if raw is None:
        if not readable:
            raise HttpError(403, "forbidden", f"the token's scope ({token.scope}) reads none of the exported types")
        return readable
    wanted = [t.strip() for t in raw.split(",") if t.strip()]
    if not wanted:
        raise HttpError(400, "invalid", "_type names no resource type")
    unknown = [t for t in wanted if t not in EXPORT_TYPES]
    if unknown:
        raise HttpError(400, "invalid", f"_type: {', '.join(u[:40] for u in unknown[:5])} cannot be exported; "
                        f"exported types: {', '.join(EXPORT_TYPES)}")
    refused = [t for t in wanted if t not in readable]
    if refused:
        raise HttpError(403, "forbidden", f"the token's scope ({token.scope}) does not read {', '.join(refused)}")
    return [t for t in EXPORT_TYPES if t in wanted]


def kick_off(vendor: EClinicalWorks, state: FhirState, request: Request, token: Token, base: str, rest: list[str]) -> Response:
    prefer = [p.strip().lower() for p in (request.headers.get("Prefer") or "").split(",")]
    if "respond-async" not in prefer:
        raise HttpError(400, "invalid", "a Bulk Data kick-off needs the header Prefer: respond-async")
    accept = (request.headers.get("Accept") or "").lower()
    if accept and not any(a in accept for a in ("application/fhir+json", "application/json", "*/*")):
        raise HttpError(400, "invalid", "a Bulk Data kick-off takes Accept: application/fhir+json")
    params = request.query
    unknown = sorted(set(params) - KICK_OFF_PARAMS)
    if unknown:
        raise HttpError(400, "invalid", f"the parameter(s) {', '.join(u[:40] for u in unknown[:5])} are not supported; "
                        f"supported: {', '.join(sorted(KICK_OFF_PARAMS))}")
    if params.get("_outputFormat", OUTPUT_FORMATS[0]) not in OUTPUT_FORMATS:
        raise HttpError(400, "invalid", "_outputFormat: only application/fhir+ndjson is produced")
    types = _types(params, token)
    since = fhir.since_stamp(fhir.parse_instant(params["_since"], "_since")) if params.get("_since") else ""
    now = datetime.now(UTC)
    query = f"?{urlencode(params)}" if params else ""
    export = Export(job_id=secrets.token_hex(16), client_id=token.client_id, request_url=f"{base}/{'/'.join(rest)}{query}", base=base,
                    types=types, since=since, started_at=vendor.fhir_clock(), transaction_time=stamp_of(now),
                    polls_required=vendor.fhir_export_polls, seconds_required=vendor.fhir_export_seconds,
                    retry_after=vendor.fhir_export_retry_after_s, file_size=vendor.fhir_export_file_size)
    with state.lock:
        running = next((e for e in state.exports.values() if e.client_id == token.client_id and e.status == "in-progress"), None)
        if running is not None:
            state.export_conflicts += 1
            return fhir.outcome(429, f"an export is already in progress for this client ({base}/bulkstatus/{running.job_id}); "
                                "wait for it to finish or DELETE it")
        finished = [job for job, e in state.exports.items() if e.status != "in-progress"]
        for job in finished[:max(0, len(state.exports) - MAX_EXPORTS_KEPT + 1)]:
            del state.exports[job]
        state.exports[export.job_id] = export
        state.exports_started += 1
    threading.Thread(target=_plan, args=(vendor, export), name=f"ecw-export-{export.job_id[:8]}", daemon=True).start()
    headers = {"Content-Location": f"{base}/bulkstatus/{export.job_id}", "Retry-After": str(export.retry_after)}
    return fhir.outcome(202, f"export {export.job_id} accepted: poll the Content-Location", headers, severity="information",
                        code="informational")


class _Planner:
    """Cuts one type's resources into files of `size`, remembering each only as cursors."""

    def __init__(self, type_name: str, size: int):
        self.type_name, self.size = type_name, size
        self.files: list[OutputFile] = []
        self.start: Cursor | None = None
        self.count = 0
        self.last = -1

    def add(self, index: int, n: int) -> None:
        k = 0
        while k < n:
            if self.start is None:
                self.start = (index, k)
            take = min(self.size - self.count, n - k)
            self.count += take
            k += take
            if self.count == self.size:
                end = (index, k) if k < n else (index + 1, 0)
                self.files.append(OutputFile(self.type_name, len(self.files) + 1, self.start, end, self.count))
                self.start, self.count = None, 0
        self.last = index

    def finish(self) -> list[OutputFile]:
        if self.count and self.start is not None:
            self.files.append(OutputFile(self.type_name, len(self.files) + 1, self.start, (self.last + 1, 0), self.count))
        return self.files


def _plan(vendor: EClinicalWorks, export: Export) -> None:
    """The background pass: one walk per table (types from the same table share it), counting resources per record."""
    practice = vendor.practice
    try:
        by_table: dict[str, list[fhir.Kind]] = defaultdict(list)
        for name in export.types:
            by_table[KINDS[name].table].append(KINDS[name])
        export.work_total = max(1, sum(practice.table(table).count for table in by_table))
        planners = {name: _Planner(name, export.file_size) for name in export.types}
        done_before = 0
        for table_name, kinds in by_table.items():
            table = practice.table(table_name)
            render = any(kind.fanout for kind in kinds)
            for index in fhir.source_indices(practice, kinds[0], since=export.since):
                if export.cancelled.is_set():
                    return
                record = practice.record(table_name, index) if render else None
                if render and record is None:
                    continue
                for kind in kinds:
                    planners[kind.name].add(index, len(kind.render(record)) if kind.fanout else 1)  # type: ignore[arg-type]
                export.work_done = done_before + index + 1
            done_before += table.count
        export.files = [f for name in export.types for f in planners[name].finish()]
        export.work_done = export.work_total
        export.planned = True
    except Exception as exc:  # a simulator bug fails the export, as a real one reports a failed job
        logger.exception("ecw bulk export %s failed", export.job_id)
        export.error = f"the export failed: {type(exc).__name__}"
        export.status = "failed"


# --- status, cancel, files ------------------------------------------------------------------------------------
def _export_of(state: FhirState, token: Token, job_id: str) -> Export:
    with state.lock:
        export = state.exports.get(job_id) if JOB_ID.fullmatch(job_id) else None
    if export is None or export.client_id != token.client_id:  # another client's export is none of this one's business
        raise HttpError(404, "not_found", "no such export (it was cancelled, forgotten, or never started)")
    return export


def status(vendor: EClinicalWorks, state: FhirState, token: Token, job_id: str) -> Response:
    export = _export_of(state, token, job_id)
    elapsed = vendor.fhir_clock() - export.started_at
    with state.lock:
        if export.status == "in-progress":
            export.polls += 1
            if export.planned and export.polls > export.polls_required and elapsed >= export.seconds_required:
                export.status = "complete"
    if export.status == "failed":
        return fhir.outcome(500, export.error)
    if export.status == "in-progress":
        fractions = [export.work_done / export.work_total,
                     export.polls / (export.polls_required + 1) if export.polls_required else 1.0,
                     elapsed / export.seconds_required if export.seconds_required else 1.0]
        progress = max(0, min(99, int(100 * min(fractions))))
        return Response(202, None, {"X-Progress": f"{progress}%", "Retry-After": str(export.retry_after)})
    return Response(200, manifest(export), {"Content-Type": "application/json"})


def manifest(export: Export) -> dict[str, Any]:
    return {
        "transactionTime": export.transaction_time, "request": export.request_url, "requiresAccessToken": True,
        "output": [{"type": f.type_name, "url": f"{export.base}/bulkfiles/{export.job_id}/{f.type_name}-{f.number}.ndjson",
                    "count": f.count} for f in export.files],
        "error": [],
    }


def cancel(state: FhirState, token: Token, job_id: str) -> Response:
    export = _export_of(state, token, job_id)
    export.cancelled.set()
    with state.lock:
        state.exports.pop(job_id, None)
    return fhir.outcome(202, f"export {job_id} cancelled; its files are gone", severity="information", code="informational")


def download(vendor: EClinicalWorks, state: FhirState, token: Token, job_id: str, file_name: str) -> Response:
    export = _export_of(state, token, job_id)
    match = FILE_NAME.fullmatch(file_name)
    if export.status != "complete" or match is None:
        raise HttpError(404, "not_found", f"no file {file_name[:80]!r} in this export")
    found = next((f for f in export.files if f.type_name == match[1] and f.number == int(match[2])), None)
    if found is None:
        raise HttpError(404, "not_found", f"no file {file_name[:80]!r} in this export")
    fhir._allowed(token, found.type_name)
    kind = KINDS[found.type_name]
    practice = vendor.practice
    indices = fhir.source_indices(practice, kind, start=found.start[0], since=export.since)
    resources, _ = fhir.collect(practice, kind, indices, first=found.start, end=found.end)
    body = b"".join(orjson.dumps(resource) + b"\n" for resource in resources)
    return Response(200, None, {"Content-Type": "application/fhir+ndjson"}, raw=body)
