"""The read-only FHIR R4 facade for partners: `metadata`, read by id, and search-type.

Thin doors: authenticate with the partner key like the REST API, check the type's read scope,
call one function (`read_resource`, `parse_search` + `run_search`), export with `to_fhir`, and
write one audit row. Every answer is `application/fhir+json`; every error an OperationOutcome.
"""

from __future__ import annotations

from typing import Any

from django.http import Http404, HttpRequest, JsonResponse
from django.urls import reverse
from django.utils.http import http_date
from rest_framework import exceptions, status
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.parsers import FormParser
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.response import Response
from rest_framework.views import APIView, set_rollback

from canonical.api.fhir_bundle import page_links, searchset_bundle
from canonical.api.fhir_capability import capability_statement
from canonical.api.fhir_outcome import FhirError, not_found, not_supported, operation_outcome
from canonical.api.fhir_search import parse_search, run_search
from canonical.api.fhir_selectors import owning_record, read_resource
from canonical.api.fhir_types import FHIR_TYPES, FhirType, get_fhir_type
from canonical.fhir.export import to_fhir
from hub.api.permissions import MissingScope
from tenants.audit import client_ip, record_audit
from tenants.choices import AuditAction

FHIR_JSON = "application/fhir+json"


class FhirJsonRenderer(JSONRenderer):
    media_type = FHIR_JSON
    format = "json"


class FhirContentNegotiation(DefaultContentNegotiation):
    """Always FHIR JSON, whatever `Accept` says (`*/*`, `application/json`, none): it is all we speak."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


# DRF exception → IssueType code (http://hl7.org/fhir/issue-type).
_ISSUE_CODES: tuple[tuple[type[exceptions.APIException], str], ...] = (
    (exceptions.NotAuthenticated, "login"),
    (exceptions.AuthenticationFailed, "login"),
    (exceptions.PermissionDenied, "forbidden"),
    (exceptions.Throttled, "throttled"),
    (exceptions.MethodNotAllowed, "not-supported"),
    (exceptions.UnsupportedMediaType, "not-supported"),
    (exceptions.NotAcceptable, "not-supported"),
    (exceptions.ParseError, "structure"),
    (exceptions.ValidationError, "invalid"),
    (exceptions.NotFound, "not-found"),
)


def fhir_exception_handler(exc: Exception, context: dict) -> Response | None:
    """Every refusal as an OperationOutcome; None (a 500 Django logs) for anything that is a bug."""
    if isinstance(exc, Http404):
        exc = not_found("Not found.")
    if not isinstance(exc, exceptions.APIException):
        return None
    headers = {}
    if getattr(exc, "auth_header", None):
        headers["WWW-Authenticate"] = exc.auth_header
    if getattr(exc, "wait", None):
        headers["Retry-After"] = str(int(exc.wait))
    if isinstance(exc, FhirError):
        body = exc.outcome()
    else:
        code = next((code for cls, code in _ISSUE_CODES if isinstance(exc, cls)), "processing")
        expression = exc.scope if isinstance(exc, MissingScope) else None
        body = operation_outcome(code, str(exc.detail), expression=expression)
    set_rollback()
    return Response(body, status=exc.status_code, headers=headers)


class FhirView(APIView):
    """FHIR JSON in and out, OperationOutcome errors; the REST API's key authentication and throttle."""

    renderer_classes = [FhirJsonRenderer]
    parser_classes = [FormParser]  # POST [type]/_search sends its parameters as a form
    content_negotiation_class = FhirContentNegotiation
    schema = None  # not in the OpenAPI document: FHIR clients read `metadata` (the CapabilityStatement)

    def get_exception_handler(self):
        return fhir_exception_handler


class CapabilityStatementView(FhirView):
    """`GET metadata`: needs no key, it describes the server, not data."""

    authentication_classes = []
    permission_classes = [AllowAny]
    throttle_classes = []

    def get(self, request):
        base_url = request.build_absolute_uri(reverse("fhir:metadata")).removesuffix("metadata")
        return Response(capability_statement(base_url))


class FhirTypeView(FhirView):
    """Resolves `{type}` (unknown → 404 not-supported) and checks its read scope (missing → 403)."""

    fhir_type: FhirType

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)  # authentication (401) first
        fhir_type = get_fhir_type(kwargs["resource_type"])
        if fhir_type is None:
            raise not_supported(
                f"Resource type '{kwargs['resource_type']}' is not served here; supported: {', '.join(FHIR_TYPES)}.",
                expression=kwargs["resource_type"],
            )
        if not request.user.has_scope(fhir_type.scope):
            raise MissingScope(fhir_type.scope)
        self.fhir_type = fhir_type

    def type_url(self) -> str:
        return self.request.build_absolute_uri(reverse("fhir:search", kwargs={"resource_type": self.fhir_type.name}))

    def audit(self, action: str, *, object_id: str = "", detail: dict[str, Any] | None = None) -> None:
        record_audit(
            action,
            object_type=f"fhir.{self.fhir_type.name}",
            object_id=object_id,
            tenant=self.request.tenant,
            partner_app=self.request.user.partner_app,
            ip=client_ip(self.request),
            detail=detail,
        )


class ReadView(FhirTypeView):
    """`GET [type]/[id]`: 404 when unknown or another tenant's, 410 when deleted at the source."""

    def get(self, request, resource_type: str, resource_id: str):
        obj = read_resource(self.fhir_type, request.tenant, resource_id)
        resource = to_fhir(obj)
        self.audit(AuditAction.READ, object_id=resource["id"])
        record = owning_record(self.fhir_type, obj)
        headers = {"ETag": f'W/"{record.version}"', "Last-Modified": http_date(record.updated_at.timestamp())}
        return Response(resource, headers=headers)


class SearchView(FhirTypeView):
    """`GET [type]?…` and `POST [type]/_search` (form body; URL parameters count too)."""

    def get(self, request, resource_type: str):
        return self.search(list(_pairs(request.query_params)))

    def post(self, request, resource_type: str):
        return self.search([*_pairs(request.query_params), *_pairs(request.data)])

    def search(self, items: list[tuple[str, str]]) -> Response:
        query = parse_search(self.fhir_type, items, tenant=self.request.tenant)
        page = run_search(query, tenant=self.request.tenant)
        resources = [to_fhir(row) for row in page.rows]
        ids = [resource["id"] for resource in resources]
        self.audit(AuditAction.LIST, detail={"count": len(ids), "ids": ids, "filters": query.parameter_names})
        type_url = self.type_url()
        self_url, next_url = page_links(type_url, items, count=query.count, next_token=page.next_token)
        return Response(searchset_bundle(resources, type_url=type_url, self_url=self_url, next_url=next_url, total=page.total))


def _pairs(data) -> list[tuple[str, str]]:
    """(name, value) pairs of a QueryDict, repeats kept; a POST without a body parses to a plain dict."""
    if not hasattr(data, "lists"):
        return [(str(name), str(value)) for name, value in data.items()]
    return [(name, value) for name, values in data.lists() for value in values]


def unsupported_path(request: HttpRequest, path: str = "") -> JsonResponse:
    """Anything else under the base (history, operations, system search): 404 OperationOutcome."""
    body = operation_outcome("not-supported", f"'{request.path}' is not an interaction this read-only server offers.")
    return JsonResponse(body, status=status.HTTP_404_NOT_FOUND, content_type=FHIR_JSON)
