"""Endpoints for machines: liveness, readiness and Prometheus metrics. No login, no session.

- ``/healthz``: the process answers (never touches the database or Redis).
- ``/readyz``: database, broker, a worker online and beat ticking, answered within 2 s.
  Anyone gets the status of each check; the details (broker URL, driver errors, host
  names) only a logged-in staff user or a caller with the metrics token.
- ``/metrics``: Prometheus text format, for ``Authorization: Bearer <TASKCENTER_METRICS_TOKEN>``.
"""

import hmac
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from taskcenter import metrics as taskcenter_metrics
from taskcenter.selectors.alerts import readiness_checks

logger = logging.getLogger(__name__)

WWW_AUTHENTICATE = 'Bearer realm="taskcenter metrics"'


@never_cache
@require_safe
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_safe
def readyz(request):
    results = readiness_checks()
    ready = all(result.ok for result in results)
    if not ready:
        logger.warning("Not ready: %s", "; ".join(f"{r.name}: {r.message}" for r in results if not r.ok))
    details = _may_see_details(request)
    body = {
        "status": "ok" if ready else "fail",
        "checks": {
            result.name: {"ok": result.ok, "message": result.message} if details else {"ok": result.ok}
            for result in results
        },
    }
    return JsonResponse(body, status=200 if ready else 503)


@never_cache
@require_safe
def metrics(request):
    token = settings.TASKCENTER_METRICS_TOKEN
    if not token:
        return HttpResponse(
            "Metrics are disabled: set TASKCENTER_METRICS_TOKEN and send it as 'Authorization: Bearer <token>'.\n",
            status=403,
            content_type="text/plain; charset=utf-8",
        )
    if not _has_metrics_token(request):
        credentials = request.headers.get("Authorization", "").partition(" ")[2]
        response = HttpResponse(
            "A valid 'Authorization: Bearer <token>' header is required.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = WWW_AUTHENTICATE + (', error="invalid_token"' if credentials else "")
        return response
    return HttpResponse(taskcenter_metrics.render(), content_type=taskcenter_metrics.CONTENT_TYPE)


def _has_metrics_token(request) -> bool:
    """Whether the request carries ``Authorization: Bearer <TASKCENTER_METRICS_TOKEN>`` (compared in constant time)."""
    token = settings.TASKCENTER_METRICS_TOKEN
    if not token:
        return False
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(), token.encode())


def _may_see_details(request) -> bool:
    """Staff users and holders of the metrics token see what each check found; others only ok or not."""
    user = getattr(request, "user", None)
    return bool(user is not None and user.is_active and user.is_staff) or _has_metrics_token(request)
