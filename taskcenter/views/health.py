"""Endpoints for machines: liveness, readiness and Prometheus metrics. No login, no session.

- ``/healthz``: the process answers (never touches the database or Redis).
- ``/readyz``: database, broker, a worker online and beat ticking, each bounded by ~2 s.
- ``/metrics``: Prometheus text format, for ``Authorization: Bearer <TASKCENTER_METRICS_TOKEN>``.
"""

import hmac
import logging

from django.conf import settings
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe

from taskcenter import metrics as taskcenter_metrics
from taskcenter.services.alerts import readiness_checks

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
    body = {
        "status": "ok" if ready else "fail",
        "checks": {result.name: {"ok": result.ok, "message": result.message} for result in results},
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
    scheme, _, credentials = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(credentials.strip().encode(), token.encode()):
        response = HttpResponse(
            "A valid 'Authorization: Bearer <token>' header is required.\n",
            status=401,
            content_type="text/plain; charset=utf-8",
        )
        response["WWW-Authenticate"] = WWW_AUTHENTICATE + (', error="invalid_token"' if credentials else "")
        return response
    return HttpResponse(taskcenter_metrics.render(), content_type=taskcenter_metrics.CONTENT_TYPE)
