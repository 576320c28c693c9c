"""Orphaned runs follow their task type's recovery strategy: the pure decision, the take-out script on a real
Redis, and what the monitor's planner and recorder write (strategies read, checkpoints discarded, runs failed)."""

import json
import time

import pytest
from django_celery_results.models import TaskResult

from taskcenter.broker import broker_channel
from taskcenter.models import AuditEntry, Checkpoint, RecoveryAction, Run
from taskcenter.recovery import WORKER_LOST, OrphanPlan, Restored, orphan_plan, unacked_remove
from taskcenter.selectors.recovery import recovered_from, runs_needing_attention
from taskcenter.services import recovery
from taskcenter.strategies import Strategy
from tests.test_recovery_strategies import checkpoint

PLAN = {"reason": WORKER_LOST, "finished": False, "automatic": 0, "limit": 3}


# --- the decision (pure) --------------------------------------------------------------


@pytest.mark.parametrize("strategy", list(Strategy))
def test_an_orphan_of_a_worker_that_is_gone_gets_its_task_types_strategy_and_rule(strategy):
    plan = orphan_plan(strategy, "default in code", **PLAN)
    assert plan == OrphanPlan(strategy, "default in code")
    assert plan.removes == (strategy in (Strategy.SKIP, Strategy.MANUAL))


def test_an_orphan_without_a_strategy_is_given_back_with_nothing_recorded():
    assert orphan_plan(None, "", **PLAN) == OrphanPlan()
    assert not OrphanPlan().removes


def test_a_message_dropped_by_a_live_worker_or_of_a_finished_run_is_given_back_whatever_the_strategy():
    assert orphan_plan(Strategy.SKIP, "r", **{**PLAN, "reason": "broker lost"}) == OrphanPlan()
    assert orphan_plan(Strategy.MANUAL, "r", **{**PLAN, "finished": True}) == OrphanPlan()


def test_after_the_automatic_limit_an_orphan_is_left_manual():
    plan = orphan_plan(Strategy.RETRY, "operator override", **{**PLAN, "automatic": 3})
    assert plan.strategy == Strategy.MANUAL and plan.rule == "operator override; limit of 3 reached"
    assert orphan_plan(Strategy.RESUME, "r", **{**PLAN, "automatic": 2}).strategy == Strategy.RESUME
    assert orphan_plan(Strategy.MANUAL, "r", **{**PLAN, "automatic": 9}).rule == "r"


# --- the broker side ------------------------------------------------------------------


def _unacked(private_broker, task_id: str, tag: str) -> None:
    from celery import current_app

    current_app.send_task("examples.add", args=[1, 2], task_id=task_id, queue="default")
    lists = [key for key in private_broker.keys("default*") if private_broker.llen(key)]
    raw = private_broker.rpop(lists[0])
    private_broker.hset("unacked", tag, json.dumps([json.loads(raw), "default", "default"]))
    private_broker.zadd("unacked_index", {tag: time.time() - 60})


@pytest.mark.django_db
def test_a_skipped_message_is_taken_out_of_unacked_without_going_back_to_any_queue(private_broker):
    _unacked(private_broker, "skip-1", "tag-1")
    _unacked(private_broker, "kept-1", "tag-2")
    with broker_channel() as channel:
        assert unacked_remove(channel, "tag-1") == "skip-1"
        assert unacked_remove(channel, "tag-1") is None  # already gone: nothing done twice
    assert private_broker.hkeys("unacked") == [b"tag-2"] and private_broker.zrange("unacked_index", 0, -1) == [b"tag-2"]
    private_broker.hdel("unacked", "tag-2")
    private_broker.zrem("unacked_index", "tag-2")
    assert private_broker.hlen("unacked") == 0 and private_broker.zcard("unacked_index") == 0
    assert all(not private_broker.llen(key) for key in private_broker.keys("default*"))


# --- the planner and the recorder -----------------------------------------------------


def started_run(task_id: str, task_name: str = "examples.process_items") -> Run:
    TaskResult.objects.create(
        task_id=task_id, task_name=task_name, status="STARTED", worker="dead@host", task_args='"()"',
        task_kwargs="\"{'items': 3}\"",
    )  # fmt: skip
    return Run.objects.create(task_result_id=task_id, task_name=task_name, queue="low", kwargs={"items": 3})


def orphan(task_id: str, task_name: str = "examples.process_items", reason: str = WORKER_LOST) -> Restored:
    return Restored(task_id=task_id, queue="low", holder="dead@host", reason=reason, task_name=task_name)


@pytest.mark.django_db
def test_the_planner_reads_each_strategy_once_per_sweep_and_discards_checkpoints_for_restart(
    django_assert_max_num_queries,
):
    recovery.recovery_policy_set(task_name="examples.add", strategy="RESTART", actor=None)
    for n in range(3):
        started_run(f"r{n}", "examples.add")
        checkpoint(f"r{n}")
    started_run("p1")  # examples.process_items: RESUME in code
    checkpoint("p1")
    started_run("f1", "examples.fail")  # no strategy
    with django_assert_max_num_queries(20):
        found = [orphan("r0", "examples.add"), orphan("r1", "examples.add"), orphan("p1")]
        found += [orphan("f1", "examples.fail"), orphan("r2", "examples.add", "broker lost")]
        plans = recovery.orphans_plan(found)
    assert plans["r0"] == OrphanPlan(Strategy.RESTART, "operator override", discarded=1)
    assert plans["p1"] == OrphanPlan(Strategy.RESUME, "default in code")
    assert "f1" not in plans and "r2" not in plans
    assert set(Checkpoint.objects.values_list("task_id", flat=True)) == {"p1", "r2"}


@pytest.mark.django_db
def test_an_orphan_that_already_had_its_automatic_recoveries_is_left_manual(settings):
    settings.TASKCENTER_RECOVERY_MAX_AUTOMATIC = 2
    started_run("loop")
    RecoveryAction.objects.bulk_create(
        [RecoveryAction(task_id="loop", strategy="RESUME", rule="default in code", new_task_id="loop")] * 2
    )
    plan = recovery.orphans_plan([orphan("loop")])["loop"]
    assert plan.strategy == Strategy.MANUAL and "limit of 2 reached" in plan.rule


@pytest.mark.django_db
def test_a_skipped_orphan_is_recorded_failed_through_the_backend_with_its_action_and_audit():
    started_run("s1")
    item = orphan("s1")
    item = Restored(**{**item.__dict__, "plan": OrphanPlan(Strategy.SKIP, "operator override")})
    recovery.recovery_record(restored=[item])

    result = TaskResult.objects.get(task_id="s1")
    assert result.status == "FAILURE" and result.task_name == "examples.process_items"
    assert result.worker == "dead@host" and result.task_kwargs == "\"{'items': 3}\""
    assert json.loads(result.result)["exc_type"] == "WorkerLostError"
    assert "worker dead@host gone; skipped by strategy" in result.result
    assert Run.objects.get(task_result_id="s1").state == "FAILURE"
    action = RecoveryAction.objects.get(task_id="s1")
    assert (action.strategy, action.rule, action.actor, action.new_task_id) == ("SKIP", "operator override", None, "")
    audit = AuditEntry.objects.get(action="run_recover", task_id="s1")
    assert audit.detail["strategy"] == "SKIP" and audit.detail["removed"] is True
    assert "Strategy SKIP by rule: operator override" in audit.message


@pytest.mark.django_db
def test_a_manual_orphan_needs_attention_and_a_given_back_one_is_not_launched_from_itself():
    started_run("m1")
    started_run("g1")
    manual = Restored(**{**orphan("m1").__dict__, "plan": OrphanPlan(Strategy.MANUAL, "default in code")})
    given = Restored(**{**orphan("g1").__dict__, "plan": OrphanPlan(Strategy.RESUME, "default in code")})
    recovery.recovery_record(restored=[manual, given])

    assert [(a.task_id, run.state) for a, run in runs_needing_attention()] == [("m1", "FAILURE")]
    assert "left for an operator" in TaskResult.objects.get(task_id="m1").result
    assert TaskResult.objects.get(task_id="g1").status == "STARTED"  # it runs again, as the same run
    resumed = RecoveryAction.objects.get(task_id="g1")
    assert resumed.new_task_id == "g1" and "from its last checkpoint" in resumed.message
    assert recovered_from("g1") is None


@pytest.mark.django_db
def test_the_run_page_shows_the_strategy_applied_to_an_orphan_and_its_rule(staff_client):
    from django.urls import reverse

    started_run("page1")
    skipped = Restored(**{**orphan("page1").__dict__, "plan": OrphanPlan(Strategy.SKIP, "operator override")})
    recovery.recovery_record(restored=[skipped])
    page = staff_client.get(reverse("taskcenter:run_detail", args=["page1"])).content.decode()
    assert "SKIP" in page and "rule: operator override" in page and "not run again" in page


def left_manual(task_id: str) -> Run:
    run = started_run(task_id)
    manual = Restored(**{**orphan(task_id).__dict__, "plan": OrphanPlan(Strategy.MANUAL, "default in code")})
    recovery.recovery_record(restored=[manual])
    return run


@pytest.mark.django_db
def test_orphans_left_manual_are_resumed_in_bulk_and_restarted_from_the_command_line(staff_client, redis_server):
    from django.core.management import call_command
    from django.urls import reverse

    first, second, third = left_manual("man-1"), left_manual("man-2"), left_manual("man-3")
    checkpoint("man-3")
    response = staff_client.post(
        reverse("taskcenter:recovery_bulk"), {"strategy": "RESUME", "task_ids": ["man-1", "man-2"]}
    )
    assert response.status_code == 302
    for run in (first, second):
        action = RecoveryAction.objects.get(task_id=run.task_id, strategy="RESUME")
        assert action.actor == staff_client.user
        assert Run.objects.get(task_result_id=action.new_task_id).retry_of_id == run.pk

    call_command("recovery", "apply", "man-3", "--strategy", "RESTART")
    restart = RecoveryAction.objects.get(task_id="man-3", strategy="RESTART")
    assert Run.objects.get(task_result_id=restart.new_task_id).retry_of_id == third.pk
    assert not Checkpoint.objects.filter(task_id="man-3").exists()
    assert runs_needing_attention() == []  # each MANUAL is resolved by what was applied


@pytest.mark.django_db(transaction=True)  # the monitor closes old connections, as in its own process
def test_the_monitor_records_a_skipped_orphan_once_the_database_answers_again(monkeypatch, redis_server):
    """A run taken out of the broker is never left unrecorded: a failed record is tried again at the next sweep."""
    from django.db import DatabaseError

    from config.celery import app
    from taskcenter.monitor.runner import Monitor
    from taskcenter.services import recovery as recovery_service

    started_run("dbdown")
    skipped = Restored(**{**orphan("dbdown").__dict__, "plan": OrphanPlan(Strategy.SKIP, "operator override")})
    monitor = Monitor(app=app)
    monitor.stream_since = time.time()
    found = [[skipped], []]
    monkeypatch.setattr(monitor.recovery, "sweep", lambda channel, **kwargs: found.pop(0))
    real_record, calls = recovery_service.recovery_record, []

    def record_once_down(*, restored):
        calls.append([item.task_id for item in restored])
        if len(calls) == 1:
            raise DatabaseError("database is locked")
        return real_record(restored=restored)

    monkeypatch.setattr(recovery_service, "recovery_record", record_once_down)
    monitor._recover()
    assert TaskResult.objects.get(task_id="dbdown").status == "STARTED" and monitor.unrecorded == [skipped]
    monitor._recover()  # the next sweep finds nothing new, and records what was left
    assert calls == [["dbdown"], ["dbdown"]] and monitor.unrecorded == []
    assert TaskResult.objects.get(task_id="dbdown").status == "FAILURE"
    assert RecoveryAction.objects.get(task_id="dbdown").strategy == "SKIP"
    events = [event.kind for event in monitor.runs.changes["dbdown"].events]
    assert events == ["task-restored", "task-failed"]  # once: the run recorder is fed at the sweep itself


@pytest.mark.django_db
def test_a_holder_the_monitor_missed_is_read_from_the_started_result():
    """Events missed (the monitor started after the task was received): the STARTED result names the worker."""
    from django_celery_results.models import TaskResult

    from taskcenter.monitor.runner import HoldersOrResults
    from taskcenter.recovery import lost_reason

    TaskResult.objects.create(task_id="seen-by-results", status="STARTED", worker="gone@host")
    TaskResult.objects.create(task_id="finished", status="SUCCESS", worker="gone@host")
    holders = HoldersOrResults({"seen-by-events": "alive@host"})
    assert holders.get("seen-by-events") == "alive@host"
    assert holders.get("seen-by-results") == "gone@host"
    assert holders.get("finished") is None and holders.get("unknown") is None
    assert lost_reason(holders.get("seen-by-results"), {"alive@host"}) == "worker lost"
