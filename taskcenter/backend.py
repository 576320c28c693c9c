"""taskcenter's result backend: django-celery-results' database backend that keeps finished runs true.

Two changes, both off the worker's hot path (a task's STARTED and SUCCESS or
FAILURE writes cost exactly what they cost in django-celery-results):

- A revoke never rewrites a finished result. Celery 5.6 stores REVOKED for
  every id a ``revoke`` control command names, with no request, so a late
  revoke (Flower's button, ``celery control revoke``, a terminate that races
  completion) would replace a SUCCESS and its result, arguments and worker.
  Only the revoke path pays one extra read: a stored SUCCESS or FAILURE is
  kept, and a waiting or started row keeps its name, arguments and worker.
- Before ``cleanup`` (the ``celery.backend_cleanup`` task) deletes expired
  results, their state, times, worker and a short outcome are copied into the
  ``Run`` rows in one UPDATE, so a run does not turn PENDING again when its
  result expires.

Set with ``CELERY_RESULT_BACKEND = "taskcenter.backend:TaskcenterBackend"``.
"""

import logging

from celery import states
from django.db.models import Exists, F, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce, Now, Substr
from django_celery_results.backends.database import DatabaseBackend
from django_celery_results.models import TaskResult

from taskcenter.models import OUTCOME_LENGTH, OUTCOME_STATES, Run

logger = logging.getLogger(__name__)


class TaskcenterBackend(DatabaseBackend):
    """The django-db result backend, with sticky final states and runs kept through cleanup."""

    def _store_result(self, task_id, result, status, traceback=None, request=None, using=None):
        if status == states.REVOKED and self._revoke_kept_out(task_id, result, request):
            return result
        return super()._store_result(task_id, result, status, traceback=traceback, request=request, using=using)

    def _revoke_kept_out(self, task_id, result, request) -> bool:
        """Handle a REVOKED write for a row that exists; return False to let the normal write happen."""
        manager = self.TaskModel._default_manager
        stored = manager.filter(task_id=task_id).values_list("status", flat=True).first()
        if stored is None:
            return False
        if stored in OUTCOME_STATES:
            logger.info("Revoke of %s ignored: it already ended in %s", task_id, stored)
            return True
        if request is not None:
            return False  # the worker revoked it while it held it: its request tells everything
        # A control command names only the id: keep the row's task, arguments, worker and start.
        content_type, content_encoding, encoded = self.encode_content(result)
        manager.filter(task_id=task_id).exclude(status__in=OUTCOME_STATES).update(
            status=states.REVOKED,
            result=encoded,
            content_type=content_type,
            content_encoding=content_encoding,
            date_done=Now(),
        )
        return True

    def cleanup(self):
        """Copy what expired results tell into their runs, then delete them, in bounded batches."""
        if not self.expires:
            return
        # Bounded batches, each copying into its runs first (taskcenter.services.retention).
        from taskcenter.services.retention import results_delete_expired

        deleted = results_delete_expired()
        if deleted:
            logger.info("Deleted %d expired result(s), their final states recorded on their runs", deleted)


def runs_record_results(results) -> int:
    """Copy state, times, worker and outcome of ``results`` (a TaskResult queryset) into their runs.

    One UPDATE with correlated subqueries. A run whose SUCCESS or FAILURE the monitor
    recorded already (with its end time) is left as it is; one whose state only the
    results table's triggers set (see ``Run.state``) gets its times and outcome here.
    A result that never finished (its worker died and nothing reported since) leaves
    its last known state, without an end time.
    Returns the number of runs updated.
    """
    result = TaskResult.objects.filter(task_id=OuterRef("task_result_id"))

    def column(name, source=result):
        return Subquery(source.values(name)[:1])

    return (
        Run.objects.filter(task_result_id__in=results.values("task_id"))
        .exclude(
            Q(recorded_state__in=OUTCOME_STATES)
            & (Q(recorded_finished_at__isnull=False) | ~Exists(result.filter(status=OuterRef("recorded_state"))))
        )
        .update(
            recorded_state=column("status"),
            recorded_started_at=Coalesce(column("date_started"), F("recorded_started_at")),
            recorded_finished_at=column("date_done", result.filter(status__in=states.READY_STATES)),
            worker=Coalesce(column("worker"), F("worker")),
            outcome=Coalesce(Substr(column("result"), 1, OUTCOME_LENGTH), F("outcome")),
        )
    )
