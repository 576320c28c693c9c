"""The parts of django-celery-beat and Celery beat that ``TaskcenterScheduler`` overrides or relies on.

The scheduler subclasses ``DatabaseScheduler`` and ``ModelEntry`` and replaces some of
their methods; a release that renames one, changes its signature or stops calling it
would silently bypass taskcenter's logic (the leader lock, the policies, the per-entry
error guard). These tests fail first, naming what changed.
"""

import inspect

import pytest
from celery import beat, schedules
from django_celery_beat.schedulers import DatabaseScheduler, ModelEntry

from config.celery import app as celery_app
from taskcenter.scheduler import PolicySchedule, TaskcenterEntry, TaskcenterScheduler

#: Method -> parameter names (after self) it has in the parent, and so must keep in ours.
SCHEDULER_OVERRIDES = {
    "tick": ["event_t", "min", "heappop", "heappush"],
    "adjust": ["n", "drift"],
    "close": [],
    "enabled_models_qs": [],
    "_get_crontab_exclude_query": [],
    "schedule_changed": [],
    "sync": [],
    "populate_heap": ["event_t", "heapify"],
    "is_due": ["entry"],
    "apply_entry": ["entry", "producer"],
    "apply_async": ["entry", "producer", "advance", "kwargs"],
    "schedules_equal": ["args", "kwargs"],
}
#: Parent methods the scheduler calls without overriding them.
SCHEDULER_CALLS = {"reserve": ["entry"], "_when": ["entry", "next_time_to_run", "mktime"], "_do_sync": []}
ENTRY_OVERRIDES = {"__init__": ["model", "app"], "is_due": [], "__next__": []}


def parameters(function) -> list[str]:
    return [name for name in inspect.signature(function).parameters if name != "self"]


@pytest.mark.parametrize(("name", "expected"), [*SCHEDULER_OVERRIDES.items(), *SCHEDULER_CALLS.items()])
def test_scheduler_methods_we_override_or_call_keep_their_signature(name, expected):
    parent = getattr(DatabaseScheduler, name, None)
    assert parent is not None, f"DatabaseScheduler.{name} is gone"
    assert parameters(parent) == expected, f"DatabaseScheduler.{name} changed its signature"


@pytest.mark.parametrize("name", list(SCHEDULER_OVERRIDES))
def test_our_overrides_accept_what_the_parent_accepts(name):
    ours = parameters(getattr(TaskcenterScheduler, name))
    parent = parameters(getattr(DatabaseScheduler, name))
    if parent == ["args", "kwargs"]:  # django-celery-beat passes them on to Celery's Scheduler
        parent = parameters(getattr(beat.Scheduler, name))
    if ours == ["args", "kwargs"] or ("kwargs" in ours and set(parent) - {"kwargs"} <= set(ours)):
        return  # passes everything on, or takes what the parent takes and more
    assert ours == parent, f"TaskcenterScheduler.{name}{ours} differs from the parent's {parent}"


def test_schedule_is_still_a_property_of_the_database_scheduler():
    assert isinstance(inspect.getattr_static(DatabaseScheduler, "schedule"), property)
    assert isinstance(inspect.getattr_static(TaskcenterScheduler, "schedule"), property)


@pytest.mark.parametrize(("name", "expected"), ENTRY_OVERRIDES.items())
def test_model_entry_methods_we_override_keep_their_signature(name, expected):
    assert parameters(getattr(ModelEntry, name)) == expected
    assert parameters(getattr(TaskcenterEntry, name)) == expected


def test_celery_tick_still_goes_through_the_methods_we_guard():
    """The per-entry error guard and the policies live in is_due/apply_entry/populate_heap."""
    tick = inspect.getsource(beat.Scheduler.tick)
    for call in ("self.is_due(entry)", "self.reserve(entry)", "self.apply_entry(entry", "self.populate_heap()",
                 "self.schedules_equal(", "self._when("):  # fmt: skip
        assert call in tick, f"Celery's Scheduler.tick no longer calls {call}"
    assert "self.apply_async(entry" in inspect.getsource(beat.Scheduler.apply_entry)
    assert "except Exception" in inspect.getsource(beat.Scheduler.apply_entry)  # a failed send does not stop beat


def test_django_celery_beat_still_works_as_the_scheduler_assumes():
    close_connections = "close_old_connections()"
    assert close_connections in inspect.getsource(DatabaseScheduler.schedule_changed)
    model_entry = inspect.getsource(ModelEntry.__init__)
    for needed in ("model.schedule", "self.options", "headers['periodic_task_name']", "model.last_run_at"):
        assert needed in model_entry, f"ModelEntry.__init__ no longer has {needed}"
    assert set(ModelEntry.save_fields) >= {"last_run_at", "total_run_count"}
    assert hasattr(DatabaseScheduler, "Changes") and hasattr(DatabaseScheduler.Changes, "last_change")
    assert hasattr(beat, "event_t") and hasattr(schedules, "schedstate")


@pytest.mark.django_db
def test_the_instance_attributes_the_scheduler_relies_on_exist():
    scheduler = DatabaseScheduler(app=celery_app, lazy=True)
    for attribute in ("_dirty", "_schedule", "_initial_read", "_heap_invalidated", "_last_timestamp", "_heap",
                      "max_interval", "old_schedulers", "app"):  # fmt: skip
        assert hasattr(scheduler, attribute), f"DatabaseScheduler instances no longer have {attribute}"


def test_policy_schedule_wraps_every_celery_schedule_method_beat_calls():
    for name in ("is_due", "remaining_estimate"):
        assert hasattr(schedules.BaseSchedule, name) or hasattr(schedules.schedule, name)
        assert name in vars(PolicySchedule)
