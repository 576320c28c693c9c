"""URL routes of the task center pages."""

import binascii
import re
from base64 import urlsafe_b64decode, urlsafe_b64encode

from django.urls import path, register_converter

from taskcenter.task_id_path import RESERVED_SEGMENTS
from taskcenter.urls_monitoring import page_urlpatterns
from taskcenter.views import (
    audit,
    deadletters,
    failures,
    launch,
    notifications,
    queues,
    retry_policy,
    runs,
    schedules,
    workers,
)
from taskcenter.views.api_tokens import token_list, token_revoke_view
from taskcenter.views.broker import broker_page, queue_message_deadletter, queue_message_delete, queue_messages
from taskcenter.views.preferences import preferences
from taskcenter.views.recovery import recovery_bulk, recovery_page, recovery_policy, run_recover
from taskcenter.views.scheduled import scheduled_list, scheduled_run_now

app_name = "taskcenter"


class TaskIdConverter:
    """Any task id as one path segment, so no id can break a link (or a page that links to it).

    Plain ids (UUIDs, and any id of letters, digits and ``_.:@-`` that starts with a
    letter or digit) appear as they are; any other id (``x/../y``, spaces, other
    scripts), and an id that names another page beside a run's (``count``, ``retry``...:
    ``task_id_path.RESERVED_SEGMENTS``), as ``~`` and the URL-safe base64 of its UTF-8 bytes.
    """

    regex = r"[^/]+"
    PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:@-]*\Z")

    def to_python(self, value: str) -> str:
        if not value.startswith("~"):
            return value
        encoded = value[1:]
        try:
            return urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode("utf-8", "surrogatepass")
        except (binascii.Error, ValueError) as exc:  # not a path of ours: no match, 404
            raise ValueError(f"not an encoded task id: {value!r}") from exc

    def to_url(self, value) -> str:
        value = str(value)
        if self.PLAIN.match(value) and value not in RESERVED_SEGMENTS:
            return value
        return "~" + urlsafe_b64encode(value.encode("utf-8", "surrogatepass")).decode().rstrip("=")


register_converter(TaskIdConverter, "taskid")

urlpatterns = [
    path("", launch.catalogue_list, name="catalogue"),
    path("tasks/<str:task_name>/launch/", launch.launch, name="launch"),
    path("tasks/<str:task_name>/batch/", launch.batch_launch, name="batch_launch"),
    path("workflows/new/", launch.workflow_launch, name="workflow_launch"),
    path("batches/<int:batch_id>/", runs.batch_detail, name="batch_detail"),
    path("runs/", runs.run_list, name="run_list"),
    path("runs/retry/", runs.bulk_retry, name="bulk_retry"),
    path("runs/saved/", runs.saved_filter_create, name="saved_filter_create"),
    path("runs/saved/<int:pk>/delete/", runs.saved_filter_remove, name="saved_filter_remove"),
    path("runs/progress/", runs.run_progress, name="run_progress"),
    path("runs/<taskid:task_id>/", runs.run_detail, name="run_detail"),
    path("runs/<taskid:task_id>/cancel/", runs.run_cancel, name="run_cancel"),
    path("runs/<taskid:task_id>/retry/", runs.run_retry, name="run_retry"),
    path("queues/", queues.queue_list, name="queue_list"),
    path("queues/<str:name>/pause/", queues.queue_pause, name="queue_pause"),
    path("queues/<str:name>/resume/", queues.queue_resume, name="queue_resume"),
    path("queues/<str:name>/purge/", queues.queue_purge, name="queue_purge"),
    path("queues/<str:name>/messages/", queue_messages, name="queue_messages"),
    path("queues/<str:name>/messages/delete/", queue_message_delete, name="queue_message_delete"),
    path("queues/<str:name>/messages/deadletter/", queue_message_deadletter, name="queue_message_deadletter"),
    path("broker/", broker_page, name="broker"),
    path("workers/", workers.worker_list, name="worker_list"),
    path("workers/<str:hostname>/pool/", workers.worker_pool, name="worker_pool"),
    path("workers/rate-limits/", workers.rate_limit, name="rate_limit"),
    path("workers/<str:hostname>/", workers.worker_detail, name="worker_detail"),
    path("workers/<str:hostname>/pool-restart/", workers.worker_pool_restart, name="worker_pool_restart"),
    path("workers/<str:hostname>/autoscale/", workers.worker_autoscale, name="worker_autoscale"),
    path("workers/<str:hostname>/queues/", workers.worker_queue, name="worker_queue"),
    path("workers/<str:hostname>/time-limits/", workers.worker_time_limit, name="worker_time_limit"),
    path("schedules/", schedules.schedule_list, name="schedule_list"),
    path("schedules/new/", schedules.schedule_new, name="schedule_new"),
    path("schedules/actions/", schedules.schedule_action, name="schedule_action"),
    path("schedules/<int:pk>/", schedules.schedule_detail, name="schedule_detail"),
    path("schedules/<int:pk>/edit/", schedules.schedule_edit, name="schedule_edit"),
    path("audit/", audit.audit_list, name="audit_list"),
    path("preferences/", preferences, name="preferences"),
    path("notifications/", notifications.notification_list, name="notification_list"),
    path("notifications/channels/new/", notifications.channel_new, name="channel_new"),
    path("notifications/channels/<int:pk>/edit/", notifications.channel_edit, name="channel_edit"),
    path("notifications/channels/<int:pk>/delete/", notifications.channel_delete, name="channel_delete"),
    path("notifications/channels/<int:pk>/test/", notifications.channel_test, name="channel_test"),
    path("notifications/rules/new/", notifications.rule_new, name="rule_new"),
    path("notifications/rules/<int:pk>/edit/", notifications.rule_edit, name="rule_edit"),
    path("notifications/rules/<int:pk>/delete/", notifications.rule_delete, name="rule_delete"),
    path("deadletters/", deadletters.deadletter_list, name="deadletter_list"),
    path("deadletters/actions/", deadletters.deadletter_bulk, name="deadletter_bulk"),
    path("deadletters/<int:pk>/", deadletters.deadletter_detail, name="deadletter_detail"),
    path("deadletters/<int:pk>/replay/", deadletters.deadletter_replay, name="deadletter_replay"),
    path("deadletters/<int:pk>/discard/", deadletters.deadletter_discard, name="deadletter_discard"),
]

urlpatterns += page_urlpatterns  # dashboard and alerts


urlpatterns += [
    path("failures/", failures.failure_list, name="failure_list"),
    path("failures/<slug:fingerprint>/", failures.failure_detail, name="failure_detail"),
    path("failures/<slug:fingerprint>/retry/", failures.failure_retry, name="failure_retry"),
    path("failures/<slug:fingerprint>/status/", failures.failure_status, name="failure_status"),
    path("failures/<slug:fingerprint>/recover/", failures.failure_recover, name="failure_recover"),
    path("failures/<slug:fingerprint>/deadletter/", failures.failure_deadletter, name="failure_deadletter"),
    path("tasks/<str:task_name>/retry-policy/", retry_policy.retry_policy_detail, name="retry_policy"),
    path("tasks/<str:task_name>/retry-policy/edit/", retry_policy.retry_policy_edit, name="retry_policy_edit"),
]

urlpatterns += [
    path("recovery/", recovery_page, name="recovery"),
    path("recovery/policy/", recovery_policy, name="recovery_policy"),
    path("recovery/apply/", recovery_bulk, name="recovery_bulk"),
    path("runs/<taskid:task_id>/recover/", run_recover, name="run_recover"),
]

urlpatterns += [
    path("scheduled/", scheduled_list, name="scheduled_list"),
    path("scheduled/<taskid:task_id>/run-now/", scheduled_run_now, name="scheduled_run_now"),
]

urlpatterns += [
    path("tokens/", token_list, name="api_tokens"),
    path("tokens/<int:pk>/revoke/", token_revoke_view, name="api_token_revoke"),
]
