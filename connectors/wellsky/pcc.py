"""The WellSky Personal Care Connect connector (formerly ClearCare; home care): OAuth2 client
credentials, FHIR-flavoured resources read incrementally, thin webhook pings pulled one by one.

Reading:
- locations, practitioners (→ caregivers), patients and care logs (`/v1/encounter/`) page by
  keyset: each page asks for `_lastUpdated=gt<the newest meta.lastUpdated seen>`, so a record
  that changes while we page moves behind the cursor and is read again rather than skipped (the
  `_page` offsets of a fixed search shift under such changes). The state is that high water, so a
  run resumes where it stopped and the next run reads only what changed.
- shifts (`/v1/appointment/`) cannot be listed: PCC answers only one client's or caregiver's
  shifts within a date window. A run walks this connection's caregivers (synced earlier in the
  chain) by external id, two 31-day windows each (about −14 … +48 days), then its clients the
  same way for the open shifts, those no caregiver is on (which no caregiver's search returns);
  a client's shifts that have a caregiver are left to the caregiver walk, which reads them.
  The state says which caregiver or client and window come next. A shift stored under that
  caregiver (or, open, under that client) and window that the search no longer returns is
  fetched by id: gone (404/410) it is tombstoned, moved or staffed it is updated.

Webhooks (`connectors/wellsky/webhooks.py`): PCC posts only `{resourceType, id}`; the hub pulls
the record with `fetch_one`. PCC signs nothing, so the secret travels in the subscription's URL.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.urls import reverse
from django.utils import timezone

from canonical.codes import CodeMapper
from canonical.models import Caregiver, Patient, Shift
from connectors.base import Connector, Page, ResourceSpec
from connectors.choices import LoginMethod, SyncMode
from connectors.errors import AuthenticationFailed, FinalError
from connectors.http import RetryPolicy, VendorHttpClient
from connectors.ratelimit import RateLimit
from connectors.registry import register
from connectors.sessions import SessionManager
from connectors.wellsky import pcc_mapping
from connectors.wellsky.pcc_client import MAX_COUNT, PersonalCareClient
from tenants.models import Connection

PATHS = {"locations": "/v1/locations/", "practitioners": "/v1/practitioners/", "patients": "/v1/patients/",
         "shifts": "/v1/appointment/", "care_logs": "/v1/encounter/"}
# What a webhook ping's resourceType names, as this connector's resource.
PING_RESOURCES = {"Patient": "patients", "Practitioner": "practitioners", "Appointment": "shifts", "Encounter": "care_logs"}
# Every subscription criterion PCC offers; `subscribe` creates one subscription each.
CRITERIA = ("patient.created", "practitioner.created", "encounter.clockout.changed", "appointment.changed")
SHIFT_LOOKBACK_DAYS = 14  # the first window starts this many days before today (the agency's date)
SHIFT_WINDOW_DAYS = 31  # PCC's largest `days` for one shift search
SHIFT_WINDOWS = 2  # consecutive windows per caregiver or client: −14 … +17 and +17 … +48 days
MAX_SEARCH_PAGES = 50  # pages of one person's window; a caregiver or client has at most a few shifts per day
# The shift walk: caregivers first, then clients (for the open shifts); the state key, PCC's search parameter, the model.
SHIFT_WALKS = ("caregiver", "client")
SEARCH_PARAMETER = {"caregiver": "practitioner", "client": "patient"}
WALK_MODEL: dict[str, type[Caregiver] | type[Patient]] = {"caregiver": Caregiver, "client": Patient}


def webhook_token(connection: Connection) -> str:
    """The secret PCC presents (as ?token=) to /hooks/wellsky-pcc/<connection>/; PCC pings carry no signature."""
    return hmac.new(settings.SECRET_KEY.encode(), f"pcc-webhook:{connection.public_id}".encode(), hashlib.sha256).hexdigest()[:40]


def webhook_url(connection: Connection, hook_base_url: str) -> str:
    """Where PCC should ping for this connection: the hub's public base URL + the hook path + the token."""
    path = reverse("wellsky-pcc-webhook", kwargs={"connection_id": connection.public_id})
    return f"{hook_base_url.rstrip('/')}{path}?token={webhook_token(connection)}"


def _spec(name: str, kind: str, capability: str) -> ResourceSpec:
    return ResourceSpec(name, kind, SyncMode.CURSOR, capability, page_size=MAX_COUNT)


@register
class WellSkyPersonalCareConnector(Connector):
    key = "wellsky_pcc"
    name = "WellSky Personal Care Connect"
    description = "WellSky Personal Care Connect (home care): OAuth2 client credentials; webhook pings pulled by id."
    credential_fields = ("client_id", "client_secret")
    # In dependency order: a sync runs them one after another, so references (and the caregivers
    # the shift search walks) are in place.
    resources = (
        _spec("locations", "location", "patients.read"),
        _spec("practitioners", "caregiver", "practitioners.read"),
        _spec("patients", "patient", "patients.read"),
        _spec("shifts", "shift", "appointments.read"),
        _spec("care_logs", "encounter", "encounters.read"),
    )
    retry_policy: ClassVar[RetryPolicy] = RetryPolicy()

    # --- plumbing ---------------------------------------------------------------------------------
    def client(self) -> PersonalCareClient:
        if not hasattr(self, "_client"):
            rate = self.options.rate_limit_per_second
            http = VendorHttpClient(
                base_url=self.connection.base_url.rstrip("/"), vendor=self.key, connection_key=str(self.connection.public_id),
                auth=SessionManager(self), rate_limit=RateLimit(rate) if rate else None, retry=self.retry_policy,
            )
            self._client = PersonalCareClient(http)
        return self._client

    def page_size(self, resource: ResourceSpec) -> int:
        return min(self.options.page_size or resource.page_size, MAX_COUNT)

    # --- session ----------------------------------------------------------------------------------
    def login(self, session) -> None:
        """Client credentials for a bearer token. Raises AuthenticationFailed when PCC refuses them."""
        try:
            credential = self.connection.credential
        except ObjectDoesNotExist:
            raise AuthenticationFailed("the connection has no credential; enter the PCC client id and secret") from None
        answer = self.client().token(credential.client_id, credential.client_secret)
        session.method = LoginMethod.OAUTH2
        session.access_token = answer["access_token"]
        session.expires_in(answer.get("expires_in"))

    # --- reading ----------------------------------------------------------------------------------
    def fetch_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        if resource.name == "shifts":
            return self._shift_page(resource, state)
        since = state.get("since", "")
        params: dict[str, Any] = {"_count": self.page_size(resource)}
        if since:
            params["_lastUpdated"] = f"gt{since}"
        bundle = self.client().search(PATHS[resource.name], params)
        records = bundle.resources
        stamps = [_last_updated(r) for r in records]
        known = [s for s in stamps if s]
        if known != sorted(known, key=_instant):
            # Keyset paging relies on PCC listing by meta.lastUpdated; rather stop loudly than skip records.
            raise FinalError(f"wellsky_pcc: {resource.name} did not come in meta.lastUpdated order; cannot page by _lastUpdated")
        if records and not known:
            raise FinalError(f"wellsky_pcc: {resource.name} answered a page without meta.lastUpdated; cannot page by _lastUpdated")
        high = known[-1] if known else since
        return Page(records, {"since": high} if high else {}, done=not bundle.has_next)

    def fetch_one(self, resource: ResourceSpec, external_id: str) -> dict[str, Any] | None:
        """GET /v1/<resource>/<id>/ (raw); None when PCC says 404 or 410."""
        return self.client().one(PATHS[resource.name], external_id)

    def normalize(self, resource: ResourceSpec, raw: dict[str, Any], mapper: CodeMapper) -> dict[str, Any]:
        return pcc_mapping.NORMALIZERS[resource.name](raw, mapper)

    # --- shifts: caregiver by caregiver, then client by client, window by window --------------------
    def _shift_page(self, resource: ResourceSpec, state: dict[str, Any]) -> Page:
        """One caregiver's or client's window (all its pages): state {caregiver|client, window, from}
        names it; {} starts over. A client's window keeps only its open shifts."""
        anchor = date.fromisoformat(state["from"]) if state.get("from") else self._today() - timedelta(days=SHIFT_LOOKBACK_DAYS)
        window = int(state.get("window", 0))
        if state.get("client") is not None:
            walk, person = "client", str(state["client"])
        elif state.get("caregiver") is not None:
            walk, person = "caregiver", str(state["caregiver"])
        else:
            first = self._next_person(None, after=None)
            if first is None:
                return Page([], {}, done=True)
            (walk, person), window = first, 0
        first_day = anchor + timedelta(days=window * SHIFT_WINDOW_DAYS)
        records = self._search_shifts(resource, walk, person, first_day)
        if walk == "client":  # a shift with a caregiver is for the caregiver walk to read (and count)
            records = [r for r in records if not _staffed(r)]
        deleted, moved = self._vanished_shifts(walk, person, first_day, {str(r.get("id")) for r in records})
        records += moved
        if window + 1 < SHIFT_WINDOWS:
            following = {walk: person, "window": window + 1, "from": anchor.isoformat()}
        else:
            after = self._next_person(walk, after=person)
            following = {after[0]: after[1], "window": 0, "from": anchor.isoformat()} if after is not None else {}
        return Page(records, following, done=not following, deleted_ids=deleted)

    def _search_shifts(self, resource: ResourceSpec, walk: str, person: str, first_day: date) -> list[dict[str, Any]]:
        """Every page of one caregiver's (walk "caregiver") or client's (walk "client") shift window."""
        params = {SEARCH_PARAMETER[walk]: person, "start_date": first_day.strftime("%Y%m%d"), "days": SHIFT_WINDOW_DAYS,
                  "_count": self.page_size(resource)}
        records: list[dict[str, Any]] = []
        for number in range(1, MAX_SEARCH_PAGES + 1):
            bundle = self.client().search(PATHS["shifts"], {**params, "_page": number})
            records += bundle.resources
            if not bundle.has_next:
                return records
        raise FinalError(f"wellsky_pcc: one {walk}'s shift window ran past {MAX_SEARCH_PAGES} pages")

    def _vanished_shifts(self, walk: str, person: str, first_day: date, found: set[str]) -> tuple[list[str], list[dict[str, Any]]]:
        """Shifts stored under this caregiver (or stored open under this client) in this window that
        the search did not return (as open, for a client): each is fetched by id, since a shift moved
        to another caregiver or day, or given a caregiver, is no deletion. Returns (ids PCC says are
        gone, the moved shifts' raw records)."""
        start = self._local_midnight(first_day)
        stored = Shift.objects.filter(tenant=self.tenant, source_connection=self.connection, deleted_at__isnull=True,
                                      start__gte=start, start__lt=start + timedelta(days=SHIFT_WINDOW_DAYS))
        if walk == "client":
            stored = stored.filter(client__external_id=person, caregiver__isnull=True)
        else:
            stored = stored.filter(caregiver__external_id=person)
        gone, moved = [], []
        for external_id in stored.exclude(external_id__in=found).order_by("external_id").values_list("external_id", flat=True):
            raw = self.fetch_one(self.resource("shifts"), external_id)
            if raw is None:
                gone.append(external_id)
            else:
                moved.append(raw)
        return gone, moved

    def _next_person(self, walk: str | None, *, after: str | None) -> tuple[str, str] | None:
        """The (walk, external id) to search after `after` in `walk`: the caregivers by external id,
        then the clients; walk None starts with the first caregiver. None when the walk is over."""
        walks = SHIFT_WALKS if walk is None else SHIFT_WALKS[SHIFT_WALKS.index(walk):]
        for name in walks:
            people = WALK_MODEL[name].objects.filter(tenant=self.tenant, source_connection=self.connection, deleted_at__isnull=True)
            if name == walk and after is not None:
                people = people.filter(external_id__gt=after)
            person = people.order_by("external_id").values_list("external_id", flat=True).first()
            if person is not None:
                return name, person
        return None

    def _zone(self):
        try:
            return ZoneInfo(self.tenant.timezone)
        except (ZoneInfoNotFoundError, ValueError, TypeError):
            return timezone.get_default_timezone()

    def _today(self) -> date:
        """Today at the agency (PCC's start_date is the agency's local date)."""
        return timezone.localdate(timezone=self._zone())

    def _local_midnight(self, day: date) -> datetime:
        return datetime.combine(day, time(0), tzinfo=self._zone())

    # --- webhooks ---------------------------------------------------------------------------------
    def subscribe(self, hook_base_url: str) -> list[dict[str, Any]]:
        """Subscribe this connection's hook (under the hub's public `hook_base_url`) to every PCC
        criterion. Idempotent: criteria already subscribed to that URL are left as they are.
        Returns the subscriptions it created. Raises VendorError subclasses."""
        endpoint = webhook_url(self.connection, hook_base_url)
        client = self.client()
        existing = {(s.get("criteria"), (s.get("channel") or {}).get("endpoint") or s.get("endpoint")) for s in client.subscriptions()}
        return [client.subscribe(criteria, endpoint) for criteria in CRITERIA if (criteria, endpoint) not in existing]


def _staffed(raw: Any) -> bool:
    """Whether a raw shift names a caregiver (a Practitioner participant with an id). One whose
    participants cannot be read counts as open, so a client's walk applies it and triage says why."""
    participants = raw.get("participant") if isinstance(raw, dict) else None
    if not isinstance(participants, list):
        return False
    for participant in participants:
        actor = participant.get("actor") if isinstance(participant, dict) else None
        reference = actor.get("reference") if isinstance(actor, dict) else None
        kind, _, identifier = reference.partition("/") if isinstance(reference, str) else ("", "", "")
        if kind == "Practitioner" and identifier:
            return True
    return False


def _last_updated(raw: Any) -> str:
    meta = raw.get("meta") if isinstance(raw, dict) else None
    value = meta.get("lastUpdated") if isinstance(meta, dict) else None
    return value if isinstance(value, str) and _instant(value) is not None else ""


def _instant(text: str) -> datetime | None:
    """An ISO 8601 instant, for comparing stamps of different precision; None when it is none."""
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
