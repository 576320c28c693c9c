"""The catalogue is an allowlist: only declared tasks are launchable."""

from celery import current_app

from taskcenter import catalogue
from taskcenter.priorities import Priority


def test_example_tasks_are_catalogued_with_queue_priority_and_description():
    add = catalogue.get_entry("examples.add")
    assert add is not None
    assert add.default_queue == "high"
    assert add.priority is Priority.HIGH
    assert add.summary == "Add two numbers and return the sum."
    assert str(add.signature) == "(x: int, y: int) -> int"
    assert {e.name for e in catalogue.all_entries()} >= {"examples.add", "examples.process_items", "examples.fail"}


def test_registered_but_undeclared_tasks_are_not_launchable():
    assert "celery.backend_cleanup" in current_app.tasks
    assert catalogue.get_entry("celery.backend_cleanup") is None
    assert catalogue.get_entry("celery.chord_unlock") is None


def test_declared_queue_and_priority_apply_to_every_sender():
    task = current_app.tasks["examples.process_items"]
    assert task.queue == "low"
    assert task.priority == Priority.LOW.broker_priority


def test_task_without_declared_queue_uses_the_default_queue(settings):
    settings.TASKCENTER_DEFAULT_QUEUE = "default"
    assert catalogue.get_entry("examples.fail").default_queue == "default"
