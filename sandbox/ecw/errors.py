"""eClinicalWorks' numeric error codes, as the simulated portal answers them.

Every refusal of the portal is JSON: `{"code": <number>, "rule": <name>, "detail": <text>,
"details": {…}}` with the HTTP status below. (Refusals made by the sandbox server in front of every
vendor — 413 body too large, 429, injected 5xx — keep the server's own `{"code": "<text>", "detail"}`.)
The real vendor's write errors are numeric (100 invalid patient, 202 patient already exists); the
rest of the numbering is ours, kept stable for the hub's connector.
"""

from __future__ import annotations

from typing import Any

from sandbox.server import HttpError

# code: (rule, HTTP status)
ERRORS: dict[int, tuple[str, int]] = {
    # the records a request names
    100: ("invalid_patient", 422),
    101: ("invalid_provider", 422),
    102: ("invalid_facility", 422),
    103: ("invalid_visit_type", 422),
    104: ("record_not_found", 404),
    105: ("invalid_parameter", 400),
    106: ("invalid_request", 400),
    107: ("unknown_claim_batch", 404),
    108: ("method_not_allowed", 405),
    # duplicates
    202: ("patient_already_exists", 409),  # the vendor's code; this sandbox has no patient writes
    203: ("appointment_already_exists", 409),
    # scheduling rules
    301: ("outside_provider_template", 422),
    302: ("visit_type_not_allowed", 422),
    303: ("slot_already_booked", 409),
    304: ("not_on_slot_grid", 422),
    305: ("start_in_past", 422),
    # login and sessions
    401: ("invalid_credentials", 401),
    402: ("invalid_mfa_code", 401),
    403: ("mfa_challenge_expired", 401),
    404: ("invalid_session", 401),
    405: ("session_expired", 401),
    # entitlements
    410: ("module_not_entitled", 403),
    411: ("write_not_permitted", 403),
    # revenue cycle
    501: ("no_coverage_on_file", 422),
    502: ("invalid_x12", 400),
    503: ("clearinghouse_unavailable", 503),
    504: ("unsupported_media_type", 415),
}


def refuse(code: int, detail: str, **details: Any) -> HttpError:
    """The HttpError for a numeric code; `details` become the structured part of the answer."""
    rule, status = ERRORS[code]
    return HttpError(status, code, detail, extra={"rule": rule, "details": details})  # type: ignore[arg-type]
