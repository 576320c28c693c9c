"""Routes of the REST API, mounted at ``/api/v1/``."""

from django.contrib.auth.decorators import login_required
from django.urls import path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.exceptions import NotFound
from rest_framework.permissions import AllowAny

import taskcenter.urls  # noqa: F401  (registers the ``taskid`` path converter)
from taskcenter.api.base import ApiView
from taskcenter.api.views import broker, catalogue, deadletters, groups, operations, runs, scheduled, schedules, system

app_name = "api"


class Schema(SpectacularAPIView):
    """The OpenAPI 3 schema: public, like any API description (it holds no data)."""

    permission_classes = [AllowAny]
    authentication_classes = []
    throttle_classes = []


class Docs(SpectacularSwaggerView):
    """Swagger UI, from the drf-spectacular-sidecar package (no CDN)."""

    permission_classes = [AllowAny]  # login_required below sends the browser to the login page
    throttle_classes = []


class Unknown(ApiView):
    """Any other path under the API: a problem details 404 (not the HTML page)."""

    schema = None  # not an endpoint

    def initial(self, request, *args, **kwargs):
        super().initial(request, *args, **kwargs)
        raise NotFound("No such API endpoint (API paths end with a slash; see /api/v1/docs/).")


urlpatterns = [
    path("schema/", Schema.as_view(), name="schema"),
    path("docs/", login_required(Docs.as_view(url_name="api:schema")), name="docs"),
    path("catalogue/", catalogue.CatalogueList.as_view(), name="catalogue"),
    path("catalogue/<str:name>/", catalogue.CatalogueDetail.as_view(), name="catalogue_entry"),
    path("runs/", runs.RunCollection.as_view(), name="runs"),
    path("runs/count/", runs.RunCount.as_view(), name="runs_count"),
    path("runs/retry/", runs.RunBulkRetry.as_view(), name="runs_bulk_retry"),
    path("runs/<taskid:task_id>/", runs.RunItem.as_view(), name="run"),
    path("runs/<taskid:task_id>/cancel/", runs.RunCancel.as_view(), name="run_cancel"),
    path("runs/<taskid:task_id>/terminate/", runs.RunTerminate.as_view(), name="run_terminate"),
    path("runs/<taskid:task_id>/retry/", runs.RunRetry.as_view(), name="run_retry"),
    path("runs/<taskid:task_id>/run-now/", scheduled.RunNow.as_view(), name="run_run_now"),
    path("scheduled/", scheduled.ScheduledList.as_view(), name="scheduled"),
    path("schedules/", schedules.ScheduleCollection.as_view(), name="schedules"),
    path("schedules/<int:pk>/", schedules.ScheduleItem.as_view(), name="schedule"),
    path("schedules/<int:pk>/enable/", schedules.ScheduleEnable.as_view(), name="schedule_enable"),
    path("schedules/<int:pk>/disable/", schedules.ScheduleDisable.as_view(), name="schedule_disable"),
    path("schedules/<int:pk>/run/", schedules.ScheduleRunNow.as_view(), name="schedule_run"),
    path("schedules/<int:pk>/next-runs/", schedules.ScheduleNextRuns.as_view(), name="schedule_next_runs"),
    path("runs/<taskid:task_id>/recover/", deadletters.RunRecover.as_view(), name="run_recover"),
    path("deadletters/", deadletters.DeadLetterList.as_view(), name="deadletters"),
    path("deadletters/<int:pk>/", deadletters.DeadLetterItem.as_view(), name="deadletter"),
    path("deadletters/<int:pk>/replay/", deadletters.DeadLetterReplay.as_view(), name="deadletter_replay"),
    path("deadletters/<int:pk>/discard/", deadletters.DeadLetterDiscard.as_view(), name="deadletter_discard"),
    path("queues/", operations.QueueList.as_view(), name="queues"),
    path("queues/<str:name>/pause/", operations.QueuePause.as_view(), name="queue_pause"),
    path("queues/<str:name>/resume/", operations.QueueResume.as_view(), name="queue_resume"),
    path("queues/<str:name>/purge/", operations.QueuePurge.as_view(), name="queue_purge"),
    path("queues/<str:name>/messages/", broker.QueueMessages.as_view(), name="queue_messages"),
    path("queues/<str:name>/messages/delete/", broker.QueueMessageDelete.as_view(), name="message_delete"),
    path(
        "queues/<str:name>/messages/deadletter/",
        broker.QueueMessageDeadletter.as_view(),
        name="queue_message_deadletter",
    ),
    path("broker/", broker.BrokerDetail.as_view(), name="broker"),
    path("workers/", operations.WorkerList.as_view(), name="workers"),
    path("workers/rate-limits/", operations.RateLimits.as_view(), name="rate_limits"),
    path("workers/<str:hostname>/pool/", operations.WorkerPool.as_view(), name="worker_pool"),
    path("workers/<str:hostname>/", operations.WorkerItem.as_view(), name="worker"),
    path("workers/<str:hostname>/pool-restart/", operations.WorkerPoolRestart.as_view(), name="worker_pool_restart"),
    path("workers/<str:hostname>/autoscale/", operations.WorkerAutoscale.as_view(), name="worker_autoscale"),
    path("workers/<str:hostname>/queues/", operations.WorkerQueue.as_view(), name="worker_queue"),
    path("workers/<str:hostname>/time-limits/", operations.WorkerTimeLimit.as_view(), name="worker_time_limit"),
    path("batches/", groups.BatchCollection.as_view(), name="batches"),
    path("batches/<int:pk>/", groups.BatchItem.as_view(), name="batch"),
    path("workflows/", groups.WorkflowCollection.as_view(), name="workflows"),
    path("workflows/<int:pk>/", groups.WorkflowItem.as_view(), name="workflow"),
    path("audit/", system.AuditList.as_view(), name="audit"),
    path("health/", system.Health.as_view(), name="health"),
]

# Last: every other path under /api/v1/ answers 404 as problem details.
urlpatterns += [re_path(r"^[\s\S]*$", Unknown.as_view(), name="unknown")]  # newlines too
