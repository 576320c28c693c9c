"""Retention end to end: the real beat sends its own cleanup entry and the real worker runs it."""

from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Run
from tests.conftest import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_beat_sends_its_retention_entry_and_the_worker_deletes_expired_rows_keeping_runs_true(celery_beat):
    old = timezone.now() - timedelta(days=400)
    expired = AuditEntry.objects.create(action="launch", target="old")
    AuditEntry.objects.filter(pk=expired.pk).update(at=old)
    Run.objects.create(task_result_id="kept-run", task_name="examples.add", queue="default")
    result = TaskResult.objects.create(task_id="kept-run", status="SUCCESS", result="3")
    TaskResult.objects.filter(pk=result.pk).update(date_done=old)

    beat = celery_beat()
    entry = wait_for(
        lambda: PeriodicTask.objects.filter(name="taskcenter-retention-cleanup").first(),
        timeout=60,
        message="beat to write its retention entry",
    )
    assert entry.task == "taskcenter.retention_cleanup" and entry.crontab is not None
    # Make the daily entry due now (what 03:30 would do), as an operator's edit would.
    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.filter(pk=entry.pk).update(crontab=None, interval=every_second)
    PeriodicTasks.update_changed()

    wait_for(
        lambda: AuditEntry.objects.filter(action=AuditEntry.Action.RETENTION_CLEANUP).exists(),
        timeout=90,
        message=f"the worker to run the cleanup beat sent\n{beat.log()[-3000:]}",
    )
    PeriodicTask.objects.filter(pk=entry.pk).update(enabled=False)
    PeriodicTasks.update_changed()
    assert not AuditEntry.objects.filter(pk=expired.pk).exists()
    assert not TaskResult.objects.filter(task_id="kept-run").exists()
    assert Run.objects.get(task_result_id="kept-run").state == "SUCCESS"
    assert "refused" not in beat.log()
