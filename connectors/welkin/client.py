"""Welkin v8's HTTP calls: the API-client token (or the v1 JWT-bearer grant), Spring-style pages
of one resource, one record by id, and the three writes. Paths are scoped /{tenant}/{instance}/."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, ValidationError

from connectors.auth_flows import jwt_bearer_token
from connectors.errors import AuthenticationFailed, FinalError
from connectors.http import VendorHttpClient, masked_path

V1_TOKEN_PATH = "/v1/token"
GONE = (404, 410)


class SpringPage(BaseModel):
    """One page as Welkin answers it: `content`, and `last` when there is no next page."""

    model_config = ConfigDict(extra="ignore")
    content: list[dict[str, Any]]
    last: bool
    totalPages: int = 0  # noqa: N815  (Welkin's name)
    number: int = 0


class WelkinClient:
    def __init__(self, http: VendorHttpClient, *, tenant: str, instance: str):
        self.http = http
        self.tenant, self.instance = quote(tenant, safe=""), quote(instance, safe="")

    def _path(self, path: str) -> str:
        return f"/{self.tenant}/{self.instance}/{path}"

    # --- tokens -----------------------------------------------------------------------------------
    def token_v8(self, client_name: str, secret: str) -> str:
        """POST /{tenant}/admin/api_clients/{clientName} {"secret"} → the JWT. Raises AuthenticationFailed."""
        if not client_name or not secret:
            raise AuthenticationFailed("the Welkin credential needs the API client's name (client id) and secret")
        response = self.http.request("POST", f"/{self.tenant}/admin/api_clients/{quote(client_name, safe='')}",
                                     json={"secret": secret}, authenticated=False)
        try:
            body = response.json()
        except ValueError:
            body = None
        token = body.get("token") if isinstance(body, dict) else None
        if not isinstance(token, str) or not token:
            raise AuthenticationFailed("welkin: the token endpoint answered without a token")
        return token

    def token_v1(self, client_id: str, secret: str, *, scope: str) -> dict[str, Any]:
        """The v1 JWT-bearer grant (HS256 assertion signed by the client secret); the token answer."""
        if not client_id or not secret:
            raise AuthenticationFailed("the Welkin credential needs a client id and secret")
        token_url = f"{self.http.base_url.rstrip('/')}{V1_TOKEN_PATH}"  # the assertion's aud is the absolute URL
        return jwt_bearer_token(self.http, token_url, client_id, secret, scope=scope)

    # --- reading ------------------------------------------------------------------------------------
    def page(self, path: str, params: dict[str, Any]) -> SpringPage:
        body = self.http.get_json(self._path(path), params=params)
        try:
            return SpringPage.model_validate(body)
        except ValidationError as exc:
            where = ".".join(str(p) for p in exc.errors()[0]["loc"])
            raise FinalError(f"welkin: {masked_path(path)} answered a page broken at {where or 'the top'}") from None

    def one(self, path: str, external_id: str) -> dict[str, Any] | None:
        """One record; None when Welkin says it is gone (404, 410)."""
        try:
            body = self.http.get_json(f"{self._path(path)}/{quote(external_id, safe='')}")
        except FinalError as exc:
            if exc.status in GONE:
                return None
            raise
        if not isinstance(body, dict):
            raise FinalError(f"welkin: {masked_path(path)}/:id answered something other than a record")
        return body

    # --- writing ------------------------------------------------------------------------------------
    def send(self, method: str, path: str, body: dict[str, Any], *, idempotency_key: str) -> dict[str, Any]:
        response = self.http.request(method, self._path(path), json=body, headers={"Idempotency-Key": idempotency_key})
        try:
            answer = response.json()
        except ValueError:
            answer = None
        if not isinstance(answer, dict) or not answer.get("id"):
            raise FinalError(f"welkin: {method} {masked_path(path)} answered without the record's id")
        return answer
