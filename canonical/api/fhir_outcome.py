"""Errors of the FHIR facade as OperationOutcome resources.

Every refusal names what is wrong (`diagnostics`) and where (`expression`: the search parameter,
the path segment), with an IssueType code from http://hl7.org/fhir/issue-type a FHIR client can
branch on.
"""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions, status


def operation_outcome(code: str, diagnostics: str, *, severity: str = "error", expression: str | None = None) -> dict[str, Any]:
    """One OperationOutcome with one issue. `code` is an IssueType code (not-found, invalid, …)."""
    issue: dict[str, Any] = {"severity": severity, "code": code, "diagnostics": diagnostics}
    if expression:
        issue["expression"] = [expression]
    return {"resourceType": "OperationOutcome", "issue": [issue]}


class FhirError(exceptions.APIException):
    """A refusal the facade answers with an OperationOutcome and `status_code`."""

    def __init__(self, status_code: int, code: str, diagnostics: str, *, expression: str | None = None):
        super().__init__(detail=diagnostics, code=code)
        self.status_code = status_code
        self.issue_code = code
        self.diagnostics = diagnostics
        self.expression = expression

    def outcome(self) -> dict[str, Any]:
        return operation_outcome(self.issue_code, self.diagnostics, expression=self.expression)


def not_found(diagnostics: str, *, expression: str | None = None) -> FhirError:
    return FhirError(status.HTTP_404_NOT_FOUND, "not-found", diagnostics, expression=expression)


def not_supported(diagnostics: str, *, expression: str | None = None, status_code: int = status.HTTP_404_NOT_FOUND) -> FhirError:
    return FhirError(status_code, "not-supported", diagnostics, expression=expression)


def gone(diagnostics: str) -> FhirError:
    return FhirError(status.HTTP_410_GONE, "deleted", diagnostics)


def invalid_parameter(name: str, diagnostics: str) -> FhirError:
    """400 for a search parameter the facade does not know or a value it cannot read."""
    return FhirError(status.HTTP_400_BAD_REQUEST, "invalid", diagnostics, expression=name)
