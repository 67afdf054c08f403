"""FHIR Bulk Data Access (`$export`): kick off, wait while the server works, read the NDJSON files.

    export = BulkExport(http, sleep=time.sleep)
    status_url = export.kick_off("/Group/all/$export", types=["Patient"])
    manifest = export.wait(status_url, timeout=600)        # polls, honouring Retry-After
    for line_batch in export.resources(manifest, "Patient", batch=1000): ...

The server answers the kick-off 202 with `Content-Location` (the status URL); the status URL
answers 202 (with `X-Progress`, `Retry-After`) while it works, then 200 with the manifest
(`output: [{type, url, count}]`). Output files need our bearer token when the manifest says
`requiresAccessToken`. Every URL the server hands us must stay under the FHIR base: it is called
with our token. Waiting is bounded; a server still working at the deadline raises RetryableError
(the job retries later and kicks off again: exports are cheap to repeat, unlike a lost record).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import orjson

from connectors.errors import FinalError, RetryableError
from connectors.http import VendorHttpClient, parse_retry_after

DEFAULT_WAIT_S = 2.0  # between status polls when the server gives no Retry-After
MAX_WAIT_S = 120.0  # the longest single pause we accept between polls


class BulkExport:
    def __init__(self, http: VendorHttpClient, *, own_link: Callable[[str], str], sleep: Callable[[float], None] = time.sleep,
                 clock: Callable[[], float] = time.monotonic):
        self.http = http
        self.own_link = own_link  # refuses a URL outside the FHIR base
        self.sleep = sleep
        self.clock = clock

    def kick_off(self, path: str, *, types: list[str], since: str = "") -> str:
        params = {"_type": ",".join(types), "_outputFormat": "application/fhir+ndjson"}
        if since:
            params["_since"] = since
        response = self.http.request("GET", path, params=params, headers={"Prefer": "respond-async", "Accept": "application/fhir+json"})
        location = response.headers.get("Content-Location")
        if response.status_code != 202 or not location:
            raise FinalError(f"{self.http.vendor}: $export answered {response.status_code} without a status URL (Content-Location)")
        return self.own_link(location)

    def wait(self, status_url: str, *, timeout: float) -> dict[str, Any]:
        """Poll the status URL until the manifest; RetryableError when the server is still working at `timeout`."""
        deadline = self.clock() + timeout
        while True:
            response = self.http.request("GET", status_url)
            if response.status_code == 200:
                try:
                    manifest = orjson.loads(response.content)
                except ValueError:
                    raise FinalError(f"{self.http.vendor}: the export's manifest is not JSON") from None
                if not isinstance(manifest, dict) or not isinstance(manifest.get("output"), list):
                    raise FinalError(f"{self.http.vendor}: the export's manifest has no output list")
                return manifest
            told = parse_retry_after(response.headers.get("Retry-After"))
            wait = min(DEFAULT_WAIT_S if told is None else told, MAX_WAIT_S)
            if self.clock() + wait > deadline:
                raise RetryableError(f"{self.http.vendor}: the bulk export was still running after {timeout:.0f}s "
                                     f"({response.headers.get('X-Progress', 'no progress given')})")
            self.sleep(wait)

    def cancel(self, status_url: str) -> None:
        try:
            self.http.request("DELETE", status_url)
        except (FinalError, RetryableError):
            pass  # an export we cannot cancel expires on the server

    def files(self, manifest: dict[str, Any], fhir_type: str) -> list[str]:
        return [self.own_link(item["url"]) for item in manifest["output"]
                if isinstance(item, dict) and item.get("type") == fhir_type and isinstance(item.get("url"), str)]

    def read_file(self, url: str, *, authenticated: bool = True) -> Iterator[Any]:
        """The resources of one NDJSON file, in order; a line that is not JSON comes back as text
        (it is kept and triaged like any malformed record, never dropped)."""
        response = self.http.request("GET", url, authenticated=authenticated, headers={"Accept": "application/fhir+ndjson"})
        for line in response.content.splitlines():
            if not line.strip():
                continue
            try:
                yield orjson.loads(line)
            except ValueError:
                yield line.decode("utf-8", "replace")
