"""searchset Bundles: the page of resources, their absolute fullUrls, and the self/next links."""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.utils import timezone

from canonical.api.fhir_paging import CURSOR_PARAM
from canonical.api.fhir_search import COUNT_PARAM


def page_links(type_url: str, items: list[tuple[str, str]], *, count: int, next_token: str | None) -> tuple[str, str | None]:
    """The self link (the search as asked, as a GET) and the next link (same filters, the page size
    in force and the continuation token), or None for the next link on the last page."""
    self_url = f"{type_url}?{urlencode(items)}" if items else type_url
    if not next_token:
        return self_url, None
    filters = [(name, value) for name, value in items if name not in (COUNT_PARAM, CURSOR_PARAM)]
    return self_url, f"{type_url}?{urlencode([*filters, (COUNT_PARAM, str(count)), (CURSOR_PARAM, next_token)])}"


def searchset_bundle(
    resources: list[dict[str, Any]], *, type_url: str, self_url: str, next_url: str | None, total: int | None = None
) -> dict[str, Any]:
    """`type_url` is the absolute `[base]/[type]`; each entry's fullUrl is `<type_url>/<id>`."""
    links = [{"relation": "self", "url": self_url}]
    if next_url:
        links.append({"relation": "next", "url": next_url})
    bundle: dict[str, Any] = {
        "resourceType": "Bundle",
        "id": str(uuid.uuid4()),
        "meta": {"lastUpdated": timezone.now().isoformat()},
        "type": "searchset",
    }
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    bundle["entry"] = [
        {"fullUrl": f"{type_url}/{resource['id']}", "resource": resource, "search": {"mode": "match"}} for resource in resources
    ]
    return bundle
