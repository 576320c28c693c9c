"""URL routes of the task center pages."""

from django.urls import path

from taskcenter.urls_monitoring import page_urlpatterns
from taskcenter.views import audit, launch, queues, runs, schedules, workers

app_name = "taskcenter"

urlpatterns = [
    path("", launch.catalogue_list, name="catalogue"),
    path("tasks/<str:task_name>/launch/", launch.launch, name="launch"),
    path("tasks/<str:task_name>/batch/", launch.batch_launch, name="batch_launch"),
    path("workflows/new/", launch.workflow_launch, name="workflow_launch"),
    path("batches/<int:batch_id>/", runs.batch_detail, name="batch_detail"),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/retry/", runs.bulk_retry, name="bulk_retry"),
    path("runs/progress/", runs.run_progress, name="run_progress"),
    path("runs/<str:task_id>/", runs.run_detail, name="run_detail"),
    path("runs/<str:task_id>/cancel/", runs.run_cancel, name="run_cancel"),
    path("runs/<str:task_id>/retry/", runs.run_retry, name="run_retry"),
    path("queues/", queues.queue_list, name="queue_list"),
    path("queues/<str:name>/pause/", queues.queue_pause, name="queue_pause"),
    path("queues/<str:name>/resume/", queues.queue_resume, name="queue_resume"),
    path("queues/<str:name>/purge/", queues.queue_purge, name="queue_purge"),
    path("workers/", workers.worker_list, name="worker_list"),
    path("workers/<str:hostname>/pool/", workers.worker_pool, name="worker_pool"),
    path("workers/rate-limits/", workers.rate_limit, name="rate_limit"),
    path("schedules/", schedules.schedule_list, name="schedule_list"),
    path("schedules/new/", schedules.schedule_new, name="schedule_new"),
    path("schedules/actions/", schedules.schedule_action, name="schedule_action"),
    path("schedules/<int:pk>/", schedules.schedule_detail, name="schedule_detail"),
    path("schedules/<int:pk>/edit/", schedules.schedule_edit, name="schedule_edit"),
    path("audit/", audit.audit_list, name="audit_list"),
]

urlpatterns += page_urlpatterns  # dashboard and alerts
