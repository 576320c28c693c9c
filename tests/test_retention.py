"""Retention: each kind of record is deleted after its retention, in bounded batches, and runs stay true."""

from datetime import timedelta
from io import StringIO
from types import SimpleNamespace

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import AuditEntry, Batch, DedupLock, QueueSample, Run, TaskMinute, Workflow
from taskcenter.scheduler import send_refusal
from taskcenter.selectors.runs import run_by_task_id
from taskcenter.services.retention import RetentionKind, _kinds, retention_cleanup, retention_register

pytestmark = pytest.mark.django_db

NOW = timezone.now()


def ago(days: float):
    return NOW - timedelta(days=days)


@pytest.fixture
def retention(settings):
    settings.CELERY_RESULT_EXPIRES = 7 * 24 * 3600
    settings.TASKCENTER_RETENTION_RUNS_DAYS = 30
    settings.TASKCENTER_RETENTION_BATCHES_DAYS = 30
    settings.TASKCENTER_RETENTION_WORKFLOWS_DAYS = 30
    settings.TASKCENTER_RETENTION_DEDUP_LOCKS_DAYS = 7
    settings.TASKCENTER_RETENTION_AUDIT_DAYS = 100
    settings.TASKCENTER_MONITOR_RETENTION_DAYS = 10
    settings.TASKCENTER_MONITOR_SAMPLE_RETENTION_DAYS = 2
    settings.TASKCENTER_RETENTION_BATCH_SIZE = 1000
    return settings


def make_run(task_id: str, *, days: float, state: str = "PENDING", result: str | None = None, **fields) -> Run:
    if result is not None:
        TaskResult.objects.create(task_id=task_id, status=result)
    return Run.objects.create(
        task_result_id=task_id,
        task_name="examples.add",
        queue="default",
        created_at=ago(days),
        recorded_state=state,
        **fields,
    )


def result_at(task_id: str, *, days: float, status: str = "SUCCESS", result: str = "3") -> TaskResult:
    row = TaskResult.objects.create(task_id=task_id, status=status, result=result, date_started=ago(days))
    TaskResult.objects.filter(pk=row.pk).update(date_done=ago(days))  # date_done is auto_now
    return row


def audit_at(days: float) -> AuditEntry:
    return AuditEntry.objects.create(at=ago(days), action="launch", target="t")


def test_results_older_than_their_retention_are_deleted_and_the_others_kept(retention):
    for name, days in [("old", 8), ("older", 400), ("young", 6), ("new", 0)]:
        result_at(name, days=days)
    report = retention_cleanup(now=NOW)
    assert report.counts["results"] == 2
    assert sorted(TaskResult.objects.values_list("task_id", flat=True)) == ["new", "young"]


def test_a_run_whose_result_is_cleaned_keeps_its_final_state_times_and_outcome(retention):
    run = make_run("r1", days=8)  # the monitor never recorded it: its state lives in its result
    result_at("r1", days=8, result="42")
    TaskResult.objects.filter(task_id="r1").update(worker="w@host")
    retention_cleanup(now=NOW, kinds=["results"])
    kept = run_by_task_id(run.task_id)
    assert kept.result_row is None
    assert kept.state == "SUCCESS"
    assert kept.finished_at is not None and kept.worker_name == "w@host" and "42" in kept.outcome


def test_the_backend_cleanup_deletes_in_the_same_bounded_batches_with_the_same_copy(retention):
    from celery import current_app

    retention.TASKCENTER_RETENTION_BATCH_SIZE = 2
    for i in range(5):
        make_run(f"b{i}", days=1)
        result_at(f"b{i}", days=8, status="FAILURE", result='{"exc_type": "ValueError"}')
    with statements() as seen:
        current_app.backend.cleanup()
    assert not TaskResult.objects.exists()
    assert {run.state for run in Run.objects.all()} == {"FAILURE"}
    assert len(deletes(seen, "django_celery_results_taskresult")) == 3  # 2 + 2 + 1


def test_finished_runs_older_than_their_retention_are_deleted_with_their_results(retention):
    make_run("recorded-success", days=31, state="SUCCESS")
    make_run("result-failure", days=31, result="FAILURE")
    make_run("recorded-revoked", days=31, state="REVOKED")
    make_run("cancelled-unsent", days=31, cancelled_at=ago(31))
    make_run("young", days=29, state="SUCCESS")
    retention_cleanup(now=NOW, kinds=["runs"])
    assert list(Run.objects.values_list("task_result_id", flat=True)) == ["young"]
    assert not TaskResult.objects.filter(task_id="result-failure").exists()


def test_runs_that_wait_or_run_are_never_deleted_however_old(retention):
    make_run("pending", days=400)
    make_run("started", days=400, state="STARTED")
    make_run("retrying", days=400, state="RETRY")
    make_run("started-result", days=400, result="STARTED")
    make_run("revoked-but-started", days=400, state="REVOKED", result="STARTED")
    assert retention_cleanup(now=NOW).counts["runs"] == 0
    assert Run.objects.count() == 5


def test_attempts_go_with_their_run():
    make_run("a", days=400, state="FAILURE", attempts=[{"worker": "w", "ended": "lost"}])
    assert retention_cleanup(now=NOW, kinds=["runs"]).counts["runs"] == 1


def test_a_rerun_of_a_deleted_run_loses_only_its_link(retention):
    original = make_run("original", days=31, state="FAILURE")
    rerun = make_run("rerun", days=1, state="SUCCESS", retry_of=original)
    retention_cleanup(now=NOW, kinds=["runs"])
    rerun.refresh_from_db()
    assert rerun.retry_of is None


def test_batches_and_workflows_go_once_old_and_none_of_their_runs_is_left(retention):
    empty_batch = Batch.objects.create(task_name="t", item_count=1, batch_size=1, created_at=ago(31))
    used_batch = Batch.objects.create(task_name="t", item_count=1, batch_size=1, created_at=ago(31))
    young_batch = Batch.objects.create(task_name="t", item_count=1, batch_size=1, created_at=ago(1))
    empty_flow = Workflow.objects.create(kind="chain", created_at=ago(31))
    used_flow = Workflow.objects.create(kind="chain", created_at=ago(31))
    make_run("in-both", days=31, batch=used_batch, workflow=used_flow)  # still pending: kept
    report = retention_cleanup(now=NOW)
    assert report.counts["batches"] == 1 and report.counts["workflows"] == 1
    assert set(Batch.objects.all()) == {used_batch, young_batch} and not Batch.objects.filter(pk=empty_batch.pk)
    assert list(Workflow.objects.all()) == [used_flow] and empty_flow.pk not in Workflow.objects.values("pk")


def test_dedup_locks_go_when_old_and_their_run_finished_or_gone(retention):
    make_run("held", days=30)
    make_run("done", days=1, state="SUCCESS")
    for key, task_id in [("k-held", "held"), ("k-done", "done"), ("k-gone", "missing"), ("k-young", "done")]:
        DedupLock.objects.create(key=key, task_id=task_id)
    DedupLock.objects.exclude(key="k-young").update(updated_at=ago(8))
    assert retention_cleanup(now=NOW, kinds=["dedup_locks"]).counts["dedup_locks"] == 2
    assert sorted(DedupLock.objects.values_list("key", flat=True)) == ["k-held", "k-young"]


def test_audit_entries_and_monitor_figures_follow_their_retention(retention):
    for days in (0, 99, 101, 500):
        audit_at(days)
    for days in (0, 9, 11):
        TaskMinute.objects.create(minute=ago(days).replace(second=0, microsecond=0), task_name="t", queue="q")
    for days in (1, 3):
        QueueSample.objects.create(at=ago(days), queue="q", depth=1)
    report = retention_cleanup(now=NOW)
    assert (report.counts["audit_entries"], report.counts["task_minutes"], report.counts["queue_samples"]) == (2, 1, 1)
    assert AuditEntry.objects.filter(at__lt=ago(100)).count() == 0
    assert TaskMinute.objects.count() == 2 and QueueSample.objects.count() == 1


def test_zero_keeps_a_kind_forever(retention):
    retention.TASKCENTER_RETENTION_AUDIT_DAYS = 0
    retention.CELERY_RESULT_EXPIRES = None
    audit_at(5000)
    result_at("ancient", days=5000)
    report = retention_cleanup(now=NOW)
    assert "audit_entries" not in report.counts and "results" not in report.counts
    assert AuditEntry.objects.filter(at__lt=ago(4000)).exists() and TaskResult.objects.filter(task_id="ancient")


class statements:
    """Record every SQL statement run on the default connection (a statement-level hook)."""

    def __enter__(self):
        self.seen = []
        self.hook = connection.execute_wrapper(self)
        self.hook.__enter__()
        return self.seen

    def __call__(self, execute, sql, params, many, context):
        self.seen.append((sql, params))
        return execute(sql, params, many, context)

    def __exit__(self, *exc):
        self.hook.__exit__(*exc)


def deletes(seen, table: str) -> list:
    return [(sql, params) for sql, params in seen if sql.startswith("DELETE") and f'"{table}"' in sql]


def test_rows_are_deleted_in_batches_of_at_most_the_batch_size(retention):
    retention.TASKCENTER_RETENTION_BATCH_SIZE = 10
    AuditEntry.objects.bulk_create([AuditEntry(at=ago(200), action="launch", target="t") for _ in range(35)])
    with statements() as seen:
        report = retention_cleanup(now=NOW, kinds=["audit_entries"])
    assert report.counts["audit_entries"] == 35
    batches = deletes(seen, "taskcenter_auditentry")
    assert len(batches) == 4
    assert all(len(params) <= 10 for _, params in batches)
    assert AuditEntry.objects.count() == 1  # the report's own entry


def test_run_batches_are_bounded_too_with_their_results(retention):
    retention.TASKCENTER_RETENTION_BATCH_SIZE = 3
    for i in range(7):
        make_run(f"run-{i}", days=31, result="SUCCESS")
    with statements() as seen:
        assert retention_cleanup(now=NOW, kinds=["runs"]).counts["runs"] == 7
    for table in ("taskcenter_run", "django_celery_results_taskresult"):
        batches = deletes(seen, table)
        assert len(batches) == 3 and all(len(params) <= 3 for _, params in batches)


def test_the_cleanup_is_logged_and_audited_with_its_counts(retention, caplog):
    audit_at(300)
    caplog.set_level("INFO", logger="taskcenter.services.retention")
    retention_cleanup(now=NOW)
    entry = AuditEntry.objects.get(action=AuditEntry.Action.RETENTION_CLEANUP)
    assert entry.actor is None and entry.detail["deleted"]["audit_entries"] == 1
    assert "Retention cleanup deleted 1 row(s)" in caplog.text


def test_other_records_register_their_retention_with_a_model_a_date_field_and_a_setting(settings):
    settings.TEST_RETENTION_REFUSED_DAYS = 1
    retention_register(
        RetentionKind(
            name="refused_audit",
            model="taskcenter.AuditEntry",
            date_field="at",
            setting="TEST_RETENTION_REFUSED_DAYS",
            expired=lambda rows: rows.filter(outcome="refused"),
        )
    )
    try:
        AuditEntry.objects.create(at=ago(2), action="launch", target="t", outcome="refused")
        AuditEntry.objects.create(at=ago(2), action="launch", target="t")
        report = retention_cleanup(now=NOW, kinds=["refused_audit"])
    finally:
        _kinds.pop("refused_audit")
    assert report.counts == {"refused_audit": 1}
    assert not AuditEntry.objects.filter(outcome="refused").exists()


def test_the_command_dry_run_counts_and_deletes_nothing(retention):
    audit_at(300)
    result_at("old", days=30)
    out = StringIO()
    call_command("taskcenter_cleanup", "--dry-run", stdout=out)
    assert "would delete 2 row(s)" in out.getvalue()
    assert AuditEntry.objects.count() == 1 and TaskResult.objects.count() == 1
    call_command("taskcenter_cleanup", stdout=out)
    assert "Retention cleanup deleted 2 row(s)" in out.getvalue()
    assert not TaskResult.objects.exists()


def test_the_command_refuses_an_unknown_kind():
    with pytest.raises(CommandError, match="Unknown kind"):
        call_command("taskcenter_cleanup", "--kind", "nope")


def test_beat_has_a_daily_cleanup_entry_that_it_is_allowed_to_send(settings):
    entry = settings.CELERY_BEAT_SCHEDULE["taskcenter-retention-cleanup"]
    assert entry["task"] == "taskcenter.retention_cleanup"
    assert entry["schedule"].hour == {3} and entry["schedule"].minute == {30}
    sent = SimpleNamespace(task="taskcenter.retention_cleanup", args=[], kwargs={}, options={})
    assert send_refusal(sent) == ""
    assert "not in the catalogue" in send_refusal(SimpleNamespace(**{**vars(sent), "args": [1]}))


def test_beat_writes_the_entry_at_start_idempotently_and_keeps_it_disabled_if_an_operator_did():
    from celery import current_app
    from django_celery_beat.models import PeriodicTask

    from taskcenter.scheduler import TaskcenterScheduler

    TaskcenterScheduler(app=current_app, lazy=True).setup_schedule()
    task = PeriodicTask.objects.get(name="taskcenter-retention-cleanup")
    assert task.task == "taskcenter.retention_cleanup" and task.crontab.hour == "3"
    PeriodicTask.objects.filter(pk=task.pk).update(enabled=False)
    TaskcenterScheduler(app=current_app, lazy=True).setup_schedule()
    assert PeriodicTask.objects.get(name="taskcenter-retention-cleanup").enabled is False


def test_the_task_runs_the_cleanup_and_returns_its_counts(retention):
    from taskcenter.tasks import retention_cleanup as task

    audit_at(300)
    assert task.run()["audit_entries"] == 1


def test_dead_letters_failure_groups_and_deliveries_go_only_once_resolved_and_old(retention):
    from taskcenter.models import DeadLetter, FailureGroup, NotificationChannel, NotificationDelivery

    retention.TASKCENTER_RETENTION_DEAD_LETTERS_DAYS = 30
    retention.TASKCENTER_RETENTION_FAILURE_GROUPS_DAYS = 30
    retention.TASKCENTER_NOTIFY_LOG_DAYS = 30
    for resolution, days in [("replayed", 31), ("discarded", 31), ("", 400), ("replayed", 1)]:
        DeadLetter.objects.create(task_id="t", reason="failed", resolution=resolution, resolved_at=ago(days))
    for number, (status, days) in enumerate([("resolved", 31), ("ignored", 31), ("open", 400), ("resolved", 1)]):
        FailureGroup.objects.create(
            fingerprint=f"f{number}",
            task_name="t",
            exception_type="E",
            status=status,
            first_seen=ago(days),
            last_seen=ago(days),
        )
    channel = NotificationChannel.objects.create(name="hook", kind="webhook", url="https://example.com/x")
    for status, days in [("sent", 31), ("failed", 31), ("pending", 400), ("sent", 1)]:
        NotificationDelivery.objects.create(
            channel=channel, alert_name="A", event="firing", status=status, created_at=ago(days)
        )
    report = retention_cleanup(now=NOW)
    assert report.counts["dead_letters"] == 2 and report.counts["failure_groups"] == 2
    assert report.counts["notification_deliveries"] == 2
    assert DeadLetter.objects.count() == FailureGroup.objects.count() == NotificationDelivery.objects.count() == 2
    assert DeadLetter.objects.filter(resolution="").exists() and FailureGroup.objects.filter(status="open").exists()
    assert NotificationDelivery.objects.filter(status="pending").exists()
