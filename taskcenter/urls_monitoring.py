"""URL routes of monitoring: staff pages (in the ``taskcenter`` namespace) and machine endpoints (top level).

Include them so:

- ``taskcenter/urls.py``: ``urlpatterns += urls_monitoring.page_urlpatterns``
  (gives ``taskcenter:dashboard`` and ``taskcenter:alerts``);
- ``config/urls.py``: ``path("", include("taskcenter.urls_monitoring"))`` before the
  ``taskcenter.urls`` include (gives ``healthz``, ``readyz`` and ``metrics``, no namespace).
"""

from django.urls import path

from taskcenter.views import dashboard, health

#: Staff pages; appended to ``taskcenter.urls.urlpatterns`` (namespace ``taskcenter``).
page_urlpatterns = [
    path("dashboard/", dashboard.dashboard, name="dashboard"),
    path("dashboard/live/", dashboard.dashboard_live, name="dashboard_live"),
    path("alerts/", dashboard.alert_list, name="alerts"),
]

#: Endpoints for load balancers and Prometheus, at the top level (no namespace, no trailing slash).
urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", health.metrics, name="metrics"),
]
