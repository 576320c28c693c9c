"""Launch a catalogued task: the one place that publishes a task for an operator."""

import json
import logging
import uuid
from datetime import timedelta

from celery import current_app
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from taskcenter import catalogue
from taskcenter.models import Run, RunSource
from taskcenter.priorities import Priority

logger = logging.getLogger(__name__)

#: Message header that tells the publish signal the run is already recorded.
RECORDED_HEADER = "taskcenter_recorded"


class LaunchError(Exception):
    """A launch was refused; ``str(error)`` is a message for the operator."""

    status_code = 400


class NotLaunchable(LaunchError):
    """The task name is not in the catalogue (or not registered with Celery)."""

    status_code = 404


class InvalidLaunch(LaunchError):
    """The launch options or arguments are wrong; ``errors`` maps field to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        self.errors = errors
        super().__init__("; ".join(f"{field}: {' '.join(msgs)}" for field, msgs in errors.items()))


class BrokerUnavailable(LaunchError):
    """The broker did not accept the message; nothing was sent or recorded."""

    status_code = 503


def run_launch(
    *,
    task_name: str,
    args: list | None = None,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: Priority | str | None = None,
    countdown: int | None = None,
    launched_by=None,
    source: RunSource = RunSource.WEB,
) -> Run:
    """Validate and publish a catalogued task; return its Run, visible as PENDING.

    Raises ``NotLaunchable`` for a name outside the catalogue, ``InvalidLaunch``
    for bad options or arguments, and ``BrokerUnavailable`` when the broker does
    not answer within the bounded publish retries (about two seconds).
    """
    entry = catalogue.get_entry(task_name)
    task = current_app.tasks.get(task_name)
    if entry is None or task is None:
        raise NotLaunchable(f"No launchable task is named {task_name!r}.")

    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    queue = queue or entry.default_queue
    priority = priority or entry.priority
    errors = _validate(entry, args=args, kwargs=kwargs, queue=queue, priority=priority, countdown=countdown)
    if errors:
        raise InvalidLaunch(errors)
    priority = Priority(priority)

    task_id = str(uuid.uuid4())
    eta = timezone.now() + timedelta(seconds=countdown) if countdown else None
    # Recorded first, so the run is listed as PENDING before any worker sees it.
    run = Run.objects.create(
        task_result_id=task_id,
        task_name=task_name,
        queue=queue,
        priority=priority,
        args=args,
        kwargs=kwargs,
        eta=eta,
        source=source,
        launched_by=launched_by if getattr(launched_by, "pk", None) else None,
    )
    try:
        task.apply_async(
            args=args,
            kwargs=kwargs,
            task_id=task_id,
            queue=queue,
            priority=priority.broker_priority,
            eta=eta,
            headers={RECORDED_HEADER: True},
        )
    except (KombuOperationalError, ConnectionError, OSError, TimeoutError) as exc:
        run.delete()
        logger.warning("Launch of %s refused: broker unavailable (%s)", task_name, exc)
        raise BrokerUnavailable(
            "The message broker (Redis) is not reachable, so the task was not sent. "
            "Check that Redis is running, then launch again."
        ) from exc
    logger.info("Launched %s [%s] on %s at %s priority", task_name, task_id, queue, priority)
    return run


def _validate(entry, *, args, kwargs, queue, priority, countdown) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}

    def add(field: str, message: str) -> None:
        errors.setdefault(field, []).append(message)

    if not isinstance(args, list):
        add("args", "Positional arguments must be a JSON list, e.g. [1, 2].")
    if not isinstance(kwargs, dict):
        add("kwargs", 'Keyword arguments must be a JSON object, e.g. {"name": "value"}.')
    for field, value in (("args", args), ("kwargs", kwargs)):
        if field not in errors:
            try:
                json.dumps(value, allow_nan=False)
            except (TypeError, ValueError) as exc:
                add(field, f"Arguments must be plain JSON values ({exc}).")
    if not errors:
        try:
            entry.signature.bind(*args, **kwargs)
        except TypeError as exc:
            add("args" if args else "kwargs", f"Arguments do not fit {entry.signature_text}: {exc}.")

    if queue not in settings.TASKCENTER_QUEUES:
        add("queue", f"Unknown queue {queue!r}; configured queues: {', '.join(settings.TASKCENTER_QUEUES)}.")
    if priority not in Priority.__members__:
        add("priority", f"Unknown priority {priority!r}; use one of {', '.join(Priority.__members__)}.")
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int):
            add("countdown", "Countdown must be a whole number of seconds.")
        elif countdown < 0:
            add("countdown", "Countdown cannot be negative.")
        elif countdown > settings.TASKCENTER_MAX_COUNTDOWN:
            add(
                "countdown",
                f"Countdown cannot exceed {settings.TASKCENTER_MAX_COUNTDOWN} seconds "
                "(the broker would deliver the task again); use a one-off schedule instead.",
            )
    return errors
