"""Services on periodic tasks (django-celery-beat schedules)."""

import json

from django_celery_beat.models import PeriodicTask

from taskcenter.models import Run, RunSource
from taskcenter.priorities import Priority
from taskcenter.services.launch import InvalidLaunch, run_launch


def schedule_run_now(*, periodic_task: PeriodicTask, actor) -> Run:
    """Launch a schedule's task now, with its arguments, queue, priority and expiry."""
    try:
        args = json.loads(periodic_task.args or "[]")
        kwargs = json.loads(periodic_task.kwargs or "{}")
    except json.JSONDecodeError as exc:
        raise InvalidLaunch({"args": [f"The schedule's arguments are not valid JSON: {exc}."]}) from None
    priority = Priority.from_broker(periodic_task.priority) if periodic_task.priority is not None else None
    return run_launch(
        task_name=periodic_task.task,
        args=args,
        kwargs=kwargs,
        queue=periodic_task.queue or None,
        priority=priority,
        expires=periodic_task.expires or periodic_task.expire_seconds,
        launched_by=actor,
        source=RunSource.SCHEDULE,
        periodic_task_name=periodic_task.name,
    )
