"""TaskcenterScheduler against the test database: what one edit reloads, and what a sync writes.

No broker is needed: these tests drive the scheduler's loading and saving directly
(``tick()`` and the leader lock are covered with real beat processes in
``test_scheduler_e2e.py``).
"""

import json
import sys

import pytest
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

from config.celery import app as celery_app
from taskcenter.models import Run, SchedulePolicy
from taskcenter.scheduler import TaskcenterScheduler
from taskcenter.services.recording import run_record_published, runs_collected
from taskcenter.services.schedules import schedules_set_enabled

# Transactional: beat commits and closes its connection as in production.
KWARGS = '{"x": 1, "y": 2}'
pytestmark = pytest.mark.django_db(transaction=True)


def make_tasks(count: int, *, every: int = 60) -> list[PeriodicTask]:
    interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
    return [
        PeriodicTask.objects.create(
            name=f"sched-{i}", task="examples.add", interval=interval, kwargs='{"x": 1, "y": 2}'
        )
        for i in range(count)
    ]


@pytest.fixture
def scheduler():
    scheduler = TaskcenterScheduler(app=celery_app, max_interval=1)
    scheduler.populate_heap()
    yield scheduler
    scheduler._lock = None  # nothing to release: the tests never take the lock


def reload(scheduler: TaskcenterScheduler) -> dict:
    """Look for changes now (beat does so every CHANGE_POLL_SECONDS)."""
    scheduler._next_poll = 0.0
    return scheduler.schedule


def heap_entries(scheduler: TaskcenterScheduler) -> dict:
    entries = {}
    for event in scheduler._heap:
        assert event.entry.name not in entries, f"{event.entry.name} is in the heap twice"
        entries[event.entry.name] = event.entry
    return entries


def test_an_edit_rebuilds_only_the_edited_entry_and_its_heap_event(scheduler):
    tasks = make_tasks(30)
    reload(scheduler)
    scheduler.populate_heap()
    before = dict(scheduler.schedule)
    edited = tasks[7]
    edited.kwargs = '{"x": 40, "y": 2}'
    edited.save()

    after = reload(scheduler)

    assert after["sched-7"] is not before["sched-7"]
    assert after["sched-7"].kwargs == {"x": 40, "y": 2}
    unchanged = [name for name in before if name != "sched-7"]
    assert all(after[name] is before[name] for name in unchanged)
    in_heap = heap_entries(scheduler)
    assert in_heap.keys() == after.keys()
    assert in_heap["sched-7"] is after["sched-7"]


def test_added_disabled_deleted_and_renamed_schedules_reach_the_heap(scheduler):
    tasks = make_tasks(5)
    reload(scheduler)
    scheduler.populate_heap()

    schedules_set_enabled(periodic_tasks=[tasks[0]], enabled=False, actor=None)
    tasks[1].delete()
    tasks[2].name = "renamed"
    tasks[2].save()
    interval = IntervalSchedule.objects.get(every=60, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name="added", task="examples.add", interval=interval)

    names = set(reload(scheduler))
    assert {"sched-0", "sched-1", "sched-2"}.isdisjoint(names)
    assert {"renamed", "added", "sched-3", "sched-4"} <= names
    assert heap_entries(scheduler).keys() == names


def test_an_edited_crontab_or_policy_row_reaches_its_entry(scheduler):
    cron = CrontabSchedule.objects.create(minute="0", hour="3", timezone="UTC")
    task = PeriodicTask.objects.create(name="nightly", task="examples.add", crontab=cron)
    reload(scheduler)
    assert scheduler.schedule["nightly"].policy.max_instances == 0

    cron.hour = "4"
    cron.save()  # django-celery-beat bumps PeriodicTasks for schedule rows too
    SchedulePolicy.objects.create(periodic_task=task, max_instances=2)
    entry = reload(scheduler)["nightly"]

    assert entry.schedule.timing.fields.hours == (4,)
    assert entry.policy.max_instances == 2


def test_without_a_change_notice_nothing_is_read_again(scheduler):
    make_tasks(3)
    reload(scheduler)
    PeriodicTasks.objects.all().delete()  # nothing changed since the last look
    scheduler._last_timestamp = None
    with CaptureQueriesContext(connection) as looked:
        reload(scheduler)
    tables = [query["sql"] for query in looked.captured_queries if "FROM" in query["sql"]]
    assert len(tables) == 1 and "django_celery_beat_periodictasks" in tables[0], tables  # the change mark only
    with CaptureQueriesContext(connection) as idle:
        scheduler.schedule  # noqa: B018  (and nothing at all until the next poll is due)
    assert idle.captured_queries == []


def test_sync_saves_every_sent_entry_and_the_collected_runs_in_one_transaction(
    scheduler, django_assert_max_num_queries
):
    make_tasks(20)
    reload(scheduler)
    scheduler.populate_heap()
    sent_at = timezone.now()
    with runs_collected(scheduler._pending_runs):
        for entry in [entry for name, entry in scheduler.schedule.items() if name.startswith("sched-")]:
            next_entry = scheduler.reserve(entry)
            next_entry.model.last_run_at = sent_at
            run_record_published(
                task_id=f"id-{entry.name}",
                task_name=entry.task,
                queue="default",
                headers={"periodic_task_name": entry.name},
                body=[[], {"x": 1}, {}],
            )
    assert not Run.objects.exists()  # collected, not written one by one

    # begin, one UPDATE, one INSERT, commit (and on PostgreSQL one UPDATE catching up final states)
    with django_assert_max_num_queries(5 if connection.vendor == "postgresql" else 4):
        scheduler.sync()

    saved = PeriodicTask.objects.filter(name__startswith="sched-")
    assert {task.last_run_at for task in saved} == {sent_at}
    assert {task.total_run_count for task in saved} == {1}
    assert Run.objects.filter(source="schedule").count() == 20
    assert not scheduler._dirty and not scheduler._pending_runs


def test_a_sync_the_database_refuses_keeps_everything_for_the_next_one(scheduler, monkeypatch):
    make_tasks(2)
    reload(scheduler)
    entry = scheduler.schedule["sched-0"]
    scheduler.reserve(entry)
    scheduler._pending_runs.append(Run(task_result_id="kept", task_name="examples.add", periodic_task_name="sched-0"))

    def refuse(*args, **kwargs):
        raise DatabaseError("database is locked")

    monkeypatch.setattr(PeriodicTask.objects, "bulk_update", refuse)
    scheduler.sync()
    assert scheduler._dirty == {"sched-0"} and len(scheduler._pending_runs) == 1
    monkeypatch.undo()

    scheduler.sync()
    assert PeriodicTask.objects.get(name="sched-0").total_run_count == 1
    assert Run.objects.filter(task_result_id="kept").exists()
    assert not scheduler._dirty and not scheduler._pending_runs


def test_arguments_of_a_rebuilt_entry_come_from_the_row(scheduler):
    (task,) = make_tasks(1)
    reload(scheduler)
    task.kwargs = json.dumps({"x": 5, "y": 6})
    task.expire_seconds = 30
    task.save()
    entry = reload(scheduler)["sched-0"]
    assert entry.kwargs == {"x": 5, "y": 6}
    assert entry.options["expires"] == 30


def test_tick_closes_a_connection_that_outlived_its_age_as_django_celery_beat_does(scheduler, monkeypatch):
    PeriodicTask.objects.exists()  # a connection is open
    assert connection.connection is not None
    connection.close_at = 0.0  # older than CONN_MAX_AGE (or closed by the database)
    monkeypatch.setattr(scheduler, "_lead", lambda: False)  # standing by: nothing else touches the database
    scheduler._next_connection_check = 0.0
    scheduler.tick()
    assert connection.connection is None


def test_a_row_that_cannot_be_built_is_marked_in_error_and_the_others_load(scheduler):
    make_tasks(2)
    PeriodicTask.objects.filter(name="sched-1").update(kwargs="[1, 2]")  # not an object
    schedule = reload(scheduler)
    assert "sched-0" in schedule and "sched-1" not in schedule
    assert "keyword arguments are not a JSON object" in SchedulePolicy.objects.get(periodic_task__name="sched-1").error


def test_a_solar_schedule_without_ephem_is_marked_in_error_and_beat_keeps_the_others(scheduler, monkeypatch):
    """What stopped beat (and with it `make run`) before ephem was a requirement."""
    from django_celery_beat.models import SolarSchedule

    make_tasks(1)
    solar = SolarSchedule.objects.create(event="sunrise", latitude=31.23, longitude=121.47)
    PeriodicTask.objects.create(name="dawn", task="examples.add", solar=solar, kwargs=KWARGS)
    monkeypatch.setitem(sys.modules, "ephem", None)  # "import ephem" fails
    schedule = reload(scheduler)
    scheduler.populate_heap()
    assert "sched-0" in schedule and "dawn" not in schedule
    error = SchedulePolicy.objects.get(periodic_task__name="dawn").error
    assert "ephem" in error and ("ModuleNotFoundError" in error or "ImproperlyConfigured" in error)  # Celery 5.6 / 5.7


def test_the_migration_clears_message_options_stored_before(db):
    import importlib

    from django.apps import apps

    make_tasks(3)
    PeriodicTask.objects.filter(name="sched-0").update(headers='{"task": "celery.map"}')
    PeriodicTask.objects.filter(name="sched-1").update(exchange="x", routing_key="y")
    migration = importlib.import_module("taskcenter.migrations.0007_schedule_health")
    migration.clear_message_options(apps, None)
    rows = PeriodicTask.objects.values_list("headers", "exchange", "routing_key")
    assert set(rows) == {("{}", None, None)}
