from __future__ import annotations

import re

from hub.request_context import get_request_id, reset_request_id, set_request_id

# A caller may pass its own id (a load balancer, a partner's tracing); anything that does not
# look like an id is replaced, so it cannot inject into log lines.
_SAFE_ID = re.compile(r"^[A-Za-z0-9._-]{8,64}$")


class RequestIdMiddleware:
    """Gives every request an id, echoed in `X-Request-ID` and written on log lines and audit rows."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        incoming = request.headers.get("X-Request-ID", "")
        token = set_request_id(incoming if _SAFE_ID.match(incoming) else None)
        try:
            request.request_id = get_request_id()
            response = self.get_response(request)
            response["X-Request-ID"] = request.request_id
            return response
        finally:
            reset_request_id(token)
