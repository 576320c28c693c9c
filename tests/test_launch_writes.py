"""What a launch writes, and how: one transaction before the publish, bulk writes for many runs."""

import pytest
from celery import signals
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter import catalogue
from taskcenter.models import AuditEntry, DeadLetter, DedupLock, Run
from taskcenter.services import control
from taskcenter.services.batches import batch_launch
from taskcenter.services.deadletters import deadletters_replay_bulk
from taskcenter.services.launch import BrokerUnavailable, run_launch
from taskcenter.services.workflows import Step, workflow_launch

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def broker(redis_server):
    return redis_server


def inserts(queries, table: str) -> int:
    return sum(1 for q in queries if q["sql"].startswith(f'INSERT INTO "{table}"'))


def finished_runs(n: int, task_name: str = "examples.add", **fields) -> list[Run]:
    TaskResult.objects.bulk_create(
        TaskResult(task_id=f"done-{i}", task_name=task_name, status="FAILURE", date_done=timezone.now())
        for i in range(n)
    )
    Run.objects.bulk_create(
        Run(task_result_id=f"done-{i}", task_name=task_name, queue="high", args=[i, 1], **fields) for i in range(n)
    )
    return list(Run.objects.filter(task_name=task_name).select_related("task_result").order_by("id"))


@pytest.mark.django_db(transaction=True)
def test_the_run_and_its_audit_entry_are_committed_before_the_message_is_published(django_user_model):
    user = django_user_model.objects.create_user("launcher")
    seen = {}

    def at_publish(headers=None, **_):
        seen["in_transaction"] = connection.in_atomic_block
        seen["run"] = Run.objects.filter(task_result_id=headers["id"]).values_list("recorded_state", flat=True).first()
        seen["audit"] = AuditEntry.objects.filter(task_id=headers["id"], action="launch", outcome="ok").count()

    signals.before_task_publish.connect(at_publish, dispatch_uid="test.at_publish")
    try:
        run = run_launch(task_name="examples.add", args=[1, 2], launched_by=user)
    finally:
        signals.before_task_publish.disconnect(dispatch_uid="test.at_publish")
    assert seen == {"in_transaction": False, "run": "PENDING", "audit": 1}
    entry = AuditEntry.objects.get(task_id=run.task_id)
    assert (entry.actor, entry.target, entry.message) == (
        user,
        "examples.add",
        "examples.add sent to high at HIGH priority.",
    )
    assert entry.detail == {"queue": "high", "priority": "HIGH", "dedup_key": ""}


def test_a_launch_writes_its_run_and_audit_entry_in_one_insert_each():
    with CaptureQueriesContext(connection) as queries:
        run_launch(task_name="examples.add", args=[1, 2])
    sql = [q["sql"] for q in queries if "SAVEPOINT" not in q["sql"]]  # the test's own transaction
    assert inserts(queries, "taskcenter_run") == 1 and inserts(queries, "taskcenter_auditentry") == 1
    assert len(sql) == 2, sql  # nothing else: no lookups, no key (none was given)


def test_a_launch_refused_by_a_stopped_broker_keeps_no_run_and_no_sent_entry(tmp_path, redis_server):
    from tests.conftest import broker_down

    with broker_down(tmp_path, redis_server), pytest.raises(BrokerUnavailable):
        run_launch(task_name="examples.add", args=[1, 2], dedup_key="k")
    assert not Run.objects.exists() and not DedupLock.objects.exists()
    assert list(AuditEntry.objects.values_list("action", "outcome")) == [("launch", "error")]


def test_a_duplicate_launch_keeps_no_sent_entry():
    first = run_launch(task_name="examples.add", args=[1, 2], dedup_key="same")
    with pytest.raises(control.Conflict):
        run_launch(task_name="examples.add", args=[1, 2], dedup_key="same")
    assert list(Run.objects.values_list("task_result_id", flat=True)) == [first.task_id]
    assert sorted(AuditEntry.objects.values_list("outcome", flat=True)) == ["ok", "refused"]


@pytest.mark.parametrize("items", [5, 50])
def test_a_batch_writes_its_runs_and_audit_entry_in_one_insert_each(items):
    with CaptureQueriesContext(connection) as queries:
        batch = batch_launch(task_name="examples.sum_batch", items=list(range(items)), batch_size=1)
    assert batch.runs.count() == items
    assert inserts(queries, "taskcenter_run") == 1 and inserts(queries, "taskcenter_auditentry") == 1


def test_the_queries_of_a_batch_do_not_grow_with_its_runs():
    counts = []
    for items in (5, 50):
        with CaptureQueriesContext(connection) as queries:
            batch_launch(task_name="examples.sum_batch", items=list(range(items)), batch_size=1)
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_the_queries_of_a_workflow_do_not_grow_with_its_steps():
    counts = []
    for steps in (5, 50):
        with CaptureQueriesContext(connection) as queries:
            workflow = workflow_launch(
                kind="group", steps=[Step(task="examples.add", args=[i, 1]) for i in range(steps)]
            )
        assert workflow.runs.count() == steps
        assert inserts(queries, "taskcenter_run") == 1
        counts.append(len(queries))
    assert counts[0] == counts[1], counts


def test_the_queries_of_a_bulk_rerun_do_not_grow_with_its_runs(django_user_model):
    user = django_user_model.objects.create_user("operator")
    runs = finished_runs(50)
    counts = []
    for chosen in (runs[:5], runs[5:]):
        with CaptureQueriesContext(connection) as queries:
            result = control.runs_retry_bulk(runs=chosen, actor=user)
        assert len(result.launched) == len(chosen) and not result.refused
        assert inserts(queries, "taskcenter_run") == 1 and inserts(queries, "taskcenter_auditentry") == 1
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    rerun = Run.objects.get(retry_of=runs[7])
    assert (rerun.args, rerun.queue, rerun.launched_by) == ([7, 1], "high", user)
    entry = AuditEntry.objects.get(task_id=rerun.task_id)
    assert (entry.action, entry.outcome, entry.detail["retry_of"]) == ("retry", "ok", "done-7")


def test_a_bulk_rerun_refuses_only_the_run_whose_key_is_held():
    @catalogue.launchable_task(name="tests.dedup_add", dedup=True)
    def dedup_add(x: int, y: int) -> int:
        return x + y

    try:
        runs = finished_runs(3, task_name="tests.dedup_add")
        held = run_launch(task_name="tests.dedup_add", args=[1, 1])  # the same arguments as runs[1]
        result = control.runs_retry_bulk(runs=runs, actor=None)
    finally:
        catalogue._entries.pop("tests.dedup_add", None)
    assert [r.retry_of_id for r in result.launched] == [runs[0].pk, runs[2].pk]
    assert [(run, "is still pending or running" in why) for run, why in result.refused] == [(runs[1], True)]
    assert not Run.objects.filter(retry_of=runs[1]).exists()  # nothing half-written
    assert AuditEntry.objects.filter(action="retry", outcome="refused", target="tests.dedup_add").count() == 1
    assert AuditEntry.objects.filter(action="retry", outcome="ok").count() == 2
    assert DedupLock.objects.filter(task_id=held.task_id).exists()  # the holder keeps its key


def test_a_bulk_rerun_reports_unfinished_runs_in_their_place():
    runs = finished_runs(3)
    TaskResult.objects.filter(task_id="done-1").update(status="STARTED")
    Run.objects.filter(task_result_id="done-1").update(
        recorded_state="STARTED"
    )  # a finished state is kept by the trigger
    runs = list(Run.objects.filter(pk__in=[r.pk for r in runs]).select_related("task_result").order_by("id"))
    result = control.runs_retry_bulk(runs=runs, actor=None)
    assert [r.retry_of_id for r in result.launched] == [runs[0].pk, runs[2].pk]
    assert [run for run, _ in result.refused] == [runs[1]]
    assert "only finished runs can be re-run" in result.refused[0][1]


def dead_letters(n: int) -> list:
    return DeadLetter.objects.bulk_create(
        DeadLetter(task_id=f"dead-{i}", task_name="examples.add", queue="high", reason="failed", args=[i, 1])
        for i in range(n)
    )


def test_the_queries_of_a_bulk_replay_of_dead_letters_do_not_grow_with_the_letters(django_user_model):
    user = django_user_model.objects.create_user("operator")
    letters = dead_letters(50)
    finished_runs(50)  # every other letter is of a finished run, so it is replayed as a re-run of it
    Run.objects.filter(task_result_id__in=[f"done-{i}" for i in range(1, 50, 2)]).delete()
    for i, x in enumerate(letters):
        DeadLetter.objects.filter(pk=x.pk).update(task_id=f"done-{i}" if i % 2 == 0 else "")
    counts = []
    for chosen in (letters[:5], letters[5:]):
        chosen = list(DeadLetter.objects.filter(pk__in=[x.pk for x in chosen]).order_by("id"))
        with CaptureQueriesContext(connection) as queries:
            result = deadletters_replay_bulk(letters=chosen, actor=user)
        assert len(result.done) == len(chosen) and not result.refused
        assert inserts(queries, "taskcenter_run") == 1
        counts.append(len(queries))
    assert counts[0] == counts[1], counts
    assert not DeadLetter.objects.filter(resolution="").exists()
    assert not DeadLetter.objects.filter(replayed_as="").exists()
    for letter in DeadLetter.objects.all():
        run = Run.objects.get(task_result_id=letter.replayed_as)
        assert run.args == letter.args and run.launched_by == user
        assert (run.retry_of.task_id if run.retry_of else "") == letter.task_id
    assert AuditEntry.objects.filter(action="deadletter_replay", outcome="ok").count() == 50


def test_a_bulk_replay_refuses_letters_already_resolved_and_keeps_the_others_going():
    letters = dead_letters(3)
    DeadLetter.objects.filter(pk=letters[1].pk).update(resolution="discarded")
    result = deadletters_replay_bulk(letters=letters, actor=None)
    assert [x.pk for x in result.done] == [letters[0].pk, letters[2].pk]
    assert [(x.pk, "already replayed or discarded" in why) for x, why in result.refused] == [(letters[1].pk, True)]
    assert DeadLetter.objects.get(pk=letters[1].pk).resolution == "discarded"
    assert Run.objects.count() == 2


def test_a_bulk_replay_with_the_broker_stopped_sends_none_and_leaves_every_letter_open(tmp_path, redis_server):
    from tests.conftest import broker_down

    letters = dead_letters(3)
    with broker_down(tmp_path, redis_server):
        result = deadletters_replay_bulk(letters=letters, actor=None)
    assert not result.done and len(result.refused) == 3
    assert all("not reachable" in why for _, why in result.refused)
    assert not Run.objects.exists()  # nothing half-written
    assert set(DeadLetter.objects.values_list("resolution", "replayed_as")) == {("", "")}
    assert not AuditEntry.objects.filter(outcome="ok").exists()
