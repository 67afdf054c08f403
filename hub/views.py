from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from hub.health import health


@never_cache
@require_GET
def healthz(request):
    """200 with each dependency 'ok', or 503 naming what failed (the error type, never details)."""
    healthy, report = health()
    return JsonResponse({"status": "ok" if healthy else "unavailable", **report}, status=200 if healthy else 503)
