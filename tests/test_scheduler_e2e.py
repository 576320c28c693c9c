"""TaskcenterScheduler for real: ``celery beat -S taskcenter.scheduler:TaskcenterScheduler``
subprocesses against the test database, a real Redis server and a real worker.

The leader lock expires after ``LOCK_SECONDS`` here (``TASKCENTER_BEAT_LOCK_SECONDS``
in the beat's environment) so that a take-over is quick to observe.
"""

import re
import signal
import time
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from taskcenter import scheduled_set
from taskcenter.broker import broker_client
from taskcenter.models import AuditEntry, Run, SchedulePolicy
from taskcenter.selectors.beat import KEY_PREFIX, beat_status
from tests.conftest import LOG_DIR, CeleryProcess, process_env, use_broker, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

SCHEDULER = "taskcenter.scheduler:TaskcenterScheduler"
LOCK_SECONDS = 3
ADD = {"task": "examples.add", "kwargs": '{"x": 2, "y": 3}'}


@pytest.fixture
def start_beat(request, django_db_blocker, redis_server, celery_worker):
    """Start ``celery beat`` with taskcenter's scheduler; every beat started is stopped afterwards."""
    client = redis_server.client()

    def clear_beat_keys():
        for key in client.scan_iter(match=KEY_PREFIX + "*"):
            client.delete(key)

    clear_beat_keys()
    started = []
    test = re.sub(r"\W+", "-", request.node.name).strip("-")

    def start(label: str = "a") -> CeleryProcess:
        with django_db_blocker.unblock():
            env = process_env(redis_server, TASKCENTER_BEAT_LOCK_SECONDS=str(LOCK_SECONDS))
        name = f"beat-{test}-{label}"
        log = LOG_DIR / f"{name}.log"
        offset = log.stat().st_size if log.exists() else 0
        beat = CeleryProcess(name, ["beat", "--loglevel=INFO", "-S", SCHEDULER, "--max-interval=1", "--pidfile="], env)
        beat.log_offset = offset
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
    clear_beat_keys()


def log_of(beat: CeleryProcess) -> str:
    """What this beat logged (its log file may hold earlier runs of the same test)."""
    return beat.log()[beat.log_offset :]


def sent_by(beat: CeleryProcess, name: str) -> int:
    return log_of(beat).count(f"Sending due task {name} ")


def interval_task(name: str, seconds: int, **fields) -> PeriodicTask:
    every, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
    return PeriodicTask.objects.create(name=name, interval=every, **{**ADD, **fields})


def runs(name: str):
    return Run.objects.filter(periodic_task_name=name).order_by("id")


def skips(name: str):
    return AuditEntry.objects.filter(action=AuditEntry.Action.SCHEDULE_SKIP, target=name).order_by("id")


def leader_pid():
    leader = beat_status()["leader"]
    return leader and leader["pid"]


def standby_pids() -> set:
    return {standby["pid"] for standby in beat_status()["standbys"]}


def tail(beat: CeleryProcess) -> str:
    return log_of(beat)[-3000:]


def test_interval_schedule_fires_repeatedly_and_every_run_is_recorded(start_beat):
    interval_task("add every second", 1)
    beat = start_beat()

    wait_for(lambda: runs("add every second").count() >= 3, timeout=60, message=f"three runs\n{tail(beat)}")
    run = runs("add every second").first()
    assert (run.task_name, run.source, run.queue) == ("examples.add", "schedule", "high")
    assert "is now the leader" in log_of(beat)


def test_one_off_clocked_schedule_fires_once_and_disables_itself(start_beat):
    clock = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(seconds=5))
    task = PeriodicTask.objects.create(name="add once", clocked=clock, one_off=True, **ADD)
    beat = start_beat()

    run = wait_for(lambda: runs("add once").first(), timeout=60, message=f"the one-off run\n{tail(beat)}")
    assert run.created_at >= clock.clocked_time  # not before its time
    wait_for(lambda: not PeriodicTask.objects.get(pk=task.pk).enabled, timeout=30, message=f"disabled\n{tail(beat)}")
    time.sleep(3)
    assert runs("add once").count() == 1


def test_disabled_schedule_does_not_fire(start_beat):
    interval_task("enabled add", 1)
    interval_task("disabled add", 1, enabled=False)
    beat = start_beat()

    wait_for(lambda: runs("enabled add").count() >= 3, timeout=60, message=f"runs of the enabled one\n{tail(beat)}")
    assert not runs("disabled add").exists()
    assert sent_by(beat, "disabled add") == 0


def test_edits_while_beat_runs_take_effect_without_a_restart(start_beat):
    task = interval_task("edited add", 1)
    other = interval_task("untouched add", 1)
    beat = start_beat()
    wait_for(lambda: runs("edited add").count() >= 2, timeout=60, message=f"runs before the edit\n{tail(beat)}")

    task.kwargs = '{"x": 40, "y": 2}'
    task.save()
    wait_for(
        lambda: runs("edited add").filter(kwargs={"x": 40, "y": 2}).exists(),
        timeout=30,
        message=f"a run with the new arguments\n{tail(beat)}",
    )
    PeriodicTask.objects.filter(pk=other.pk).update(enabled=False)  # a bulk change, as the pages make
    PeriodicTasks.update_changed()
    time.sleep(3)  # beat looks for changes once a second
    stopped_at = runs("untouched add").count()
    time.sleep(3)
    assert runs("untouched add").count() == stopped_at
    assert runs("edited add").filter(kwargs={"x": 40, "y": 2}).count() >= 2
    assert "schedule changed" in log_of(beat)


def test_two_beats_send_each_due_run_once_and_one_of_them_leads(start_beat):
    name = "add every two seconds"
    interval_task(name, 2)
    beats = [start_beat("a"), start_beat("b")]
    pids = {beat.process.pid for beat in beats}

    def one_leader_one_standby():
        status = beat_status()
        standbys = {standby["pid"] for standby in status["standbys"]}
        return status["healthy"] and len(standbys) == 1 and status

    status = wait_for(one_leader_one_standby, timeout=60, message=f"a leader and a standby\n{tail(beats[0])}")
    assert status["state"] == "ok"
    assert {status["leader"]["pid"], *standby_pids()} == pids
    wait_for(lambda: runs(name).exists(), timeout=30, message="the first run")
    time.sleep(8)

    created = list(runs(name).values_list("created_at", flat=True))
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(created, created[1:], strict=False)]
    assert len(created) >= 4, created
    # One run per due time, two seconds apart: no due time was sent twice, none was lost.
    assert all(1.0 <= gap <= 4.5 for gap in gaps), gaps
    sent = sorted(sent_by(beat, name) for beat in beats)
    assert sent[0] == 0 and sent[1] >= len(created), sent
    assert beat_status()["leader"]["pid"] in pids


def test_standby_takes_over_when_the_leader_is_killed(start_beat):
    name = "add every second"
    interval_task(name, 1)
    first = start_beat("a")
    wait_for(lambda: leader_pid() == first.process.pid, timeout=60, message=f"a leader\n{tail(first)}")
    second = start_beat("b")
    wait_for(lambda: second.process.pid in standby_pids(), timeout=60, message=f"a standby\n{tail(second)}")
    wait_for(lambda: runs(name).count() >= 2, timeout=30, message="runs by the first beat")

    first.process.send_signal(signal.SIGKILL)
    first.process.wait(timeout=10)
    killed_at, killed_wall = time.monotonic(), timezone.now()

    wait_for(
        lambda: leader_pid() == second.process.pid,
        timeout=LOCK_SECONDS + 20,
        message=f"the standby to take over\n{tail(second)}",
    )
    took = time.monotonic() - killed_at
    assert took <= LOCK_SECONDS + 5, f"take-over took {took:.1f}s"
    wait_for(
        lambda: runs(name).filter(created_at__gt=killed_wall).count() >= 2,
        timeout=30,
        message=f"runs by the new leader\n{tail(second)}",
    )
    assert sent_by(second, name) >= 2
    assert "is now the leader" in log_of(second)
    assert beat_status()["healthy"]


@pytest.mark.parametrize(
    ("misfire", "grace_seconds", "sent", "message"),
    [
        ("run_once", None, 1, None),
        ("skip", None, 0, "misfire: skipped 5 missed run(s)"),
        ("run_once", 60, 0, "grace time exceeded by"),
    ],
)
def test_runs_missed_while_beat_was_down_follow_the_misfire_policy(start_beat, misfire, grace_seconds, sent, message):
    now = timezone.now()
    # Hourly, at a minute half an hour away from now: five due times in the last five hours,
    # none in the next half hour.
    cron = CrontabSchedule.objects.create(minute=str((now.minute + 30) % 60), hour="*", timezone="UTC")
    task = PeriodicTask.objects.create(name="hourly add", crontab=cron, **ADD)
    SchedulePolicy.objects.create(periodic_task=task, misfire=misfire, grace_seconds=grace_seconds)
    PeriodicTask.objects.filter(pk=task.pk).update(last_run_at=now - timedelta(hours=5))  # beat was down
    beat = start_beat()

    def handled():
        task.refresh_from_db()
        return task.last_run_at > now  # saved after a send or a skip

    wait_for(handled, timeout=60, message=f"beat to handle the missed runs\n{tail(beat)}")
    time.sleep(3)
    assert runs("hourly add").count() == sent
    if message is None:
        assert not skips("hourly add").exists()
    else:
        assert skips("hourly add").count() == 1
        entry = skips("hourly add").get()
        assert entry.message.startswith(message), entry.message
        assert entry.actor is None and entry.outcome == "ok"
    task.refresh_from_db()
    assert task.total_run_count == sent  # a skipped due time is not counted as a run


def test_max_instances_skips_due_runs_while_the_previous_run_is_active(start_beat):
    name = "long every second"
    task = interval_task(name, 1, task="examples.process_items", kwargs='{"items": 4, "seconds_per_item": 1.0}')
    SchedulePolicy.objects.create(periodic_task=task, max_instances=1)
    beat = start_beat()

    wait_for(lambda: skips(name).count() >= 2, timeout=60, message=f"skips\n{tail(beat)}")
    assert runs(name).count() == 1
    assert skips(name).first().message == "max instances: 1 run still active"
    assert runs(name).get().state in ("PENDING", "RECEIVED", "STARTED", "SUCCESS")
    # Once the run is over, the next due time sends again.
    wait_for(lambda: runs(name).count() >= 2, timeout=60, message=f"a second run\n{tail(beat)}")
    first = runs(name).first()
    assert first.state == "SUCCESS"


def test_jitter_delays_the_run_by_a_random_countdown(start_beat, celery_worker):
    clock = ClockedSchedule.objects.create(clocked_time=timezone.now() + timedelta(seconds=2))
    task = PeriodicTask.objects.create(name="jittered add", clocked=clock, one_off=True, **ADD)
    SchedulePolicy.objects.create(periodic_task=task, jitter_seconds=3600)
    beat = start_beat()

    run = wait_for(lambda: runs("jittered add").first(), timeout=60, message=f"the run\n{tail(beat)}")
    with broker_client() as client:
        try:
            # The message waits in the scheduled set until its ETA, up to an hour away.
            due = wait_for(
                lambda: scheduled_set.held_due(client, run.task_id), timeout=20, message="the run to wait in the set"
            )  # fmt: skip
            assert due > run.created_at
            assert run.state == "PENDING"
        finally:
            scheduled_set.cancel(client, run.task_id)


def test_beat_status_says_no_leader_without_beat_and_unknown_without_broker(tmp_path, redis_server):
    client = redis_server.client()
    for key in client.scan_iter(match=KEY_PREFIX + "*"):
        client.delete(key)
    status = beat_status()
    assert (status["state"], status["healthy"], status["reachable"], status["leader"]) == (
        "no_leader",
        False,
        True,
        None,
    )

    use_broker(f"redis+socket://{tmp_path}/absent.sock")
    try:
        began = time.monotonic()
        status = beat_status()
    finally:
        use_broker(redis_server.url)
    assert time.monotonic() - began < 10
    assert (status["state"], status["healthy"], status["reachable"]) == ("unknown", False, False)
    assert "broker unreachable" in status["message"]
