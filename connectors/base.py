"""The connector contract. A vendor subclass declares, at class level, what it reads and writes
and what each needs; the sync engine, sessions, jobs and triage are shared.

To add a vendor: copy a sibling folder (`connector.py`, `client.py`, `mapping.py`, `webhooks.py`,
`constants.py`), fill in the client and the mapping, and register the class in `registry.py`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from canonical.codes import CodeMapper
from connectors.choices import SyncMode
from connectors.errors import FinalError, InvalidPayload
from tenants.models import Connection


@dataclass(frozen=True)
class ResourceSpec:
    """One thing the connector reads: the vendor's name for it, the canonical kind it becomes,
    how changes are found, and the entitlement that reading it needs."""

    name: str
    kind: str
    mode: SyncMode
    capability: str
    page_size: int = 100


@dataclass(frozen=True)
class WriteSpec:
    name: str
    kind: str  # the canonical kind the answer becomes, or another name the connector keeps (`keep_write_result`)
    capability: str
    required: tuple[str, ...] = ()  # request fields without which the write is refused before anything else
    follow_up: bool = False  # the write goes on after it succeeds (`Connector.follow_up`, e.g. an 835 to fetch later)


@dataclass
class Page:
    """One page of raw vendor records. `next_state` is the cursor to store once this page is
    committed; `done` ends the run (and then `next_state` is what the next run starts from)."""

    records: list[dict[str, Any]]
    next_state: dict[str, Any]
    done: bool
    deleted_ids: list[str] = field(default_factory=list)  # tombstones a cursor feed reports
    # full_diff: False when the walk may have missed live records (the list shifted under it), so
    # this run tombstones nothing; the next poll settles deletions.
    complete: bool = True


@dataclass
class WriteResult:
    external_id: str
    record: dict[str, Any]  # the vendor's record after the write (raw), normalized like a synced one
    created: bool = True
    # Records the write made along the way, as (resource name, raw record), applied first (a referral's new patient).
    related: list[tuple[str, dict[str, Any]]] = field(default_factory=list)


class ConnectionOptions(BaseModel):
    """Per-connection settings every vendor understands; vendors extend this schema."""

    model_config = ConfigDict(extra="forbid")

    rate_limit_per_second: int | None = Field(default=None, ge=1, le=10_000)
    page_size: int | None = Field(default=None, ge=1, le=1000)
    max_pages: int = Field(default=100_000, ge=1)


class Connector:
    key: ClassVar[str]
    name: ClassVar[str]
    description: ClassVar[str] = ""
    credential_fields: ClassVar[tuple[str, ...]] = ()
    resources: ClassVar[tuple[ResourceSpec, ...]] = ()
    writes: ClassVar[tuple[WriteSpec, ...]] = ()
    options_schema: ClassVar[type[ConnectionOptions]] = ConnectionOptions
    default_rate_limit_per_second: ClassVar[int | None] = None

    def __init__(self, connection: Connection):
        self.connection = connection
        self.tenant = connection.tenant

    # --- configuration ------------------------------------------------------------------------
    @cached_property
    def options(self) -> ConnectionOptions:
        try:
            return self.options_schema.model_validate(self.connection.options or {})
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise FinalError(f"connection options are invalid at '{where}': {first['msg']}") from None

    @classmethod
    def resource(cls, name: str) -> ResourceSpec:
        for spec in cls.resources:
            if spec.name == name:
                return spec
        raise KeyError(f"{cls.key} has no resource {name!r}; it has {', '.join(r.name for r in cls.resources)}")

    @classmethod
    def resource_for_kind(cls, kind: str) -> ResourceSpec:
        """The resource that reads `kind` (where a written record's answer is applied)."""
        for spec in cls.resources:
            if spec.kind == kind:
                return spec
        raise KeyError(f"{cls.key} reads no {kind!r}")

    @classmethod
    def write_spec(cls, name: str) -> WriteSpec:
        for spec in cls.writes:
            if spec.name == name:
                return spec
        raise KeyError(f"{cls.key} cannot {name!r}; it can {', '.join(w.name for w in cls.writes) or 'not write'}")

    # --- reading --------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        """Fetch the page after `state` (HTTP happens here, outside any transaction)."""
        raise NotImplementedError(f"{type(self).__name__}.fetch_page")

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        """Fetch one record (push mode pulls); None when the vendor says it is gone."""
        raise NotImplementedError(f"{type(self).__name__}.fetch_one")

    def external_id(self, resource: ResourceSpec, raw: dict[str, Any]) -> str:
        value = raw.get("id") if isinstance(raw, dict) else None
        if value in (None, ""):
            raise InvalidPayload("the record has no id", path="id")
        return str(value)

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        """Raw vendor record → canonical dict. Pure: no I/O besides the mapper. Raises InvalidPayload."""
        raise NotImplementedError(f"{type(self).__name__}.normalize")

    # --- writing --------------------------------------------------------------------------------
    def check_write(self, name: str, payload: dict[str, Any]) -> None:
        """Refuse, before any vendor call, a write the vendor would refuse (raises WriteRefused). Default: none."""

    def write(self, name: str, payload: dict[str, Any], *, idempotency_key: str) -> WriteResult:
        raise NotImplementedError(f"{type(self).__name__}.write")

    def keep_write_result(self, name: str, payload: dict[str, Any], result: WriteResult) -> Any:
        """For a write whose `WriteSpec.kind` is not a canonical kind (an eligibility check, a claim
        batch): keep the vendor's answer and return the row (it has a `public_id`). Runs inside the
        transaction that ends the write."""
        raise NotImplementedError(f"{type(self).__name__}.keep_write_result")

    def follow_up(self, name: str, record: Any) -> float | None:
        """What a write does after it succeeded (`WriteSpec.follow_up`): one step, then the seconds
        until the next one, or None when it is done. `record` is what `keep_write_result` returned."""
        return None

    # --- sessions -------------------------------------------------------------------------------
    def login(self, session) -> None:
        """Log in and fill `session` (a connectors.sessions.SessionData). Raises AuthenticationFailed / MfaRequired."""
        raise NotImplementedError(f"{type(self).__name__}.login")

    def apply_session(self, request, session) -> None:
        """Sign an outgoing request with the session (bearer token by default)."""
        if session.access_token:
            request.headers["Authorization"] = f"Bearer {session.access_token}"

    def observe_session(self, response, session) -> bool:
        """Pick up a token or cookie the vendor rotated in `response`; True when it changed."""
        return False
