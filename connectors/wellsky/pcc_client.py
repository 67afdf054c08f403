"""WellSky Personal Care Connect's HTTP calls: the client-credentials token, searches that answer
a Bundle, one record by id, and webhook subscriptions. Every path ends with a slash (PCC's router
answers 404 without it)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.auth_flows import oauth2_client_credentials
from connectors.errors import FinalError
from connectors.http import VendorHttpClient, masked_path

TOKEN_PATH = "/oauth/accesstoken"
MAX_COUNT = 100  # PCC's largest _count
GONE = (404, 410)


class _Link(BaseModel):
    model_config = ConfigDict(extra="ignore")
    relation: str
    url: str


class _Entry(BaseModel):
    model_config = ConfigDict(extra="ignore")
    resource: dict[str, Any]


class Bundle(BaseModel):
    """A searchset: the page's resources, the search's total, and `next` when there is more."""

    model_config = ConfigDict(extra="ignore")
    total: int = 0
    link: list[_Link] = []
    entry: list[_Entry] = []

    @property
    def resources(self) -> list[dict[str, Any]]:
        return [e.resource for e in self.entry]

    @property
    def has_next(self) -> bool:
        return any(link.relation == "next" for link in self.link)


def record_path(path: str, external_id: str) -> str:
    """/v1/patients/ + an id → /v1/patients/<id>/, the id quoted so it stays one path segment."""
    return f"{path}{quote(external_id, safe='')}/"


class PersonalCareClient:
    def __init__(self, http: VendorHttpClient):
        self.http = http

    def token(self, client_id: str, client_secret: str) -> dict[str, Any]:
        """POST /oauth/accesstoken (client credentials by HTTP Basic). Raises AuthenticationFailed on a refusal."""
        return oauth2_client_credentials(self.http, TOKEN_PATH, client_id, client_secret)

    def search(self, path: str, params: dict[str, Any]) -> Bundle:
        body = self.http.get_json(path, params=params)
        if not isinstance(body, dict) or body.get("resourceType") != "Bundle":
            raise FinalError(f"wellsky_pcc: {masked_path(path)} answered something other than a Bundle")
        try:
            return Bundle.model_validate(body)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise FinalError(f"wellsky_pcc: {masked_path(path)} answered a Bundle broken at {where}") from None

    def one(self, path: str, external_id: str) -> dict[str, Any] | None:
        """One record; None when PCC says it is gone (404 or 410)."""
        try:
            body = self.http.get_json(record_path(path, external_id))
        except FinalError as exc:
            if exc.status in GONE:
                return None
            raise
        if not isinstance(body, dict):
            raise FinalError(f"wellsky_pcc: {masked_path(path)}:id answered something other than a record")
        return body

    def subscriptions(self) -> list[dict[str, Any]]:
        return self.search("/v1/subscriptions/", {}).resources

    def subscribe(self, criteria: str, endpoint: str) -> dict[str, Any]:
        response = self.http.request("POST", "/v1/subscriptions/", json={"criteria": criteria, "endpoint": endpoint})
        body = response.json()
        if not isinstance(body, dict) or not body.get("id"):
            raise FinalError("wellsky_pcc: POST /v1/subscriptions/ answered without an id")
        return body
