"""Launch catalogued tasks: the one place that publishes a task for an operator.

Every entry point (pages, admin, commands, schedule "run now", retries, batches
and workflows) goes through ``launch_prepare`` and ``run_launch`` here.
"""

import json
import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from celery.app.task import Task
from django.conf import settings
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError

from taskcenter import catalogue
from taskcenter.catalogue import CatalogueEntry
from taskcenter.models import Run, RunSource
from taskcenter.priorities import Priority
from taskcenter.services import dedup
from taskcenter.services.audit import Action, Outcome, audit_record

logger = logging.getLogger(__name__)

#: Message header that tells the publish signal the run is already recorded.
RECORDED_HEADER = "taskcenter_recorded"
#: Errors that mean the broker did not take the message.
BROKER_ERRORS = (KombuOperationalError, ConnectionError, OSError, TimeoutError)
#: How far in the past an ETA may lie before it is refused as a mistake.
ETA_PAST_TOLERANCE = timedelta(minutes=1)


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
        super().__init__("; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in errors.items()))


class DuplicateRun(LaunchError):
    """A run with the same de-duplication key still waits or runs."""

    status_code = 409

    def __init__(self, existing: Run | None, key: str):
        self.existing = existing
        self.key = key
        where = f" (run {existing.task_id}, {existing.state})" if existing else ""
        super().__init__(f"A run with de-duplication key {key!r} is still pending or running{where}.")


class BrokerUnavailable(LaunchError):
    """The broker did not accept the message; nothing was sent or recorded."""

    status_code = 503

    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or "The message broker (Redis) is not reachable, so the task was not sent. "
            "Check that Redis is running, then launch again."
        )


class FieldErrors(dict):
    """Messages per form field, collected while checking a launch."""

    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)


@dataclass
class PreparedLaunch:
    """A validated launch, ready to be recorded and published."""

    entry: CatalogueEntry
    task: Task
    args: list
    kwargs: dict
    queue: str
    priority: Priority
    eta: datetime | None
    expires: datetime | None
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    def message_options(self) -> dict:
        """Options for ``apply_async`` / a signature, with the recorded-run header."""
        return {
            "task_id": self.task_id,
            "queue": self.queue,
            "priority": self.priority.broker_priority,
            "eta": self.eta,
            "expires": self.expires,
            "headers": {RECORDED_HEADER: True},
        }

    def new_run(self, **fields) -> Run:
        """An unsaved Run describing this launch."""
        return Run(
            task_result_id=self.task_id,
            task_name=self.entry.name,
            queue=self.queue,
            priority=self.priority,
            args=self.args,
            kwargs=self.kwargs,
            eta=self.eta,
            expires=self.expires,
            **fields,
        )


def launch_prepare(
    *,
    task_name: str,
    args: list | None = None,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: Priority | str | None = None,
    countdown: int | None = None,
    eta: datetime | None = None,
    expires: int | datetime | None = None,
    leading_arguments: int = 0,
) -> PreparedLaunch:
    """Check a launch without sending it; raise ``NotLaunchable`` or ``InvalidLaunch``.

    ``leading_arguments`` is how many positional arguments Celery prepends at run
    time (1 for a chain step after the first, or a chord callback).
    """
    entry = catalogue.get_entry(task_name)
    task = current_app.tasks.get(task_name)
    if entry is None or task is None:
        raise NotLaunchable(f"No launchable task is named {task_name!r}.")

    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    queue = queue or entry.default_queue
    priority = priority or entry.priority
    errors = FieldErrors()
    _check_arguments(entry, args, kwargs, leading_arguments, errors)
    if queue not in settings.TASKCENTER_QUEUES:
        errors.add("queue", f"Unknown queue {queue!r}; configured queues: {', '.join(settings.TASKCENTER_QUEUES)}.")
    if priority not in Priority.__members__:
        errors.add("priority", f"Unknown priority {priority!r}; use one of {', '.join(Priority.__members__)}.")
    now = timezone.now()
    eta = _check_start(countdown, eta, now, errors)
    expires = _check_expiry(expires, eta or now, now, errors)
    if errors:
        raise InvalidLaunch(dict(errors))
    return PreparedLaunch(
        entry=entry,
        task=task,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=Priority(priority),
        eta=eta,
        expires=expires,
    )


def run_launch(
    *,
    task_name: str,
    args: list | None = None,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: Priority | str | None = None,
    countdown: int | None = None,
    eta: datetime | None = None,
    expires: int | datetime | None = None,
    dedup_key: str | None = None,
    launched_by=None,
    source: RunSource = RunSource.WEB,
    retry_of: Run | None = None,
    periodic_task_name: str = "",
) -> Run:
    """Validate and publish a catalogued task; return its Run, visible as PENDING.

    Raises ``NotLaunchable`` for a name outside the catalogue, ``InvalidLaunch``
    for bad options or arguments, ``DuplicateRun`` when the de-duplication key is
    held by a run still pending or running, and ``BrokerUnavailable`` when the
    broker does not take the message within the bounded publish retries. Each
    launch that passes validation is written to the audit trail with its outcome.
    """
    prepared = launch_prepare(
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        countdown=countdown,
        eta=eta,
        expires=expires,
    )
    key = (dedup_key or "").strip()
    if not key and prepared.entry.dedup:
        key = prepared.entry.dedup_key_for(prepared.args, prepared.kwargs)
    action = Action.RETRY if retry_of is not None else Action.LAUNCH
    audit = {
        "actor": launched_by,
        "action": action,
        "target": prepared.entry.name,
        "task_id": prepared.task_id,
        "detail": {"queue": prepared.queue, "priority": prepared.priority.value, "dedup_key": key}
        | ({"retry_of": retry_of.task_id} if retry_of is not None else {}),
    }

    # Recorded first, so the run is listed as PENDING before any worker sees it.
    run = prepared.new_run(
        source=source,
        launched_by=launched_by if getattr(launched_by, "pk", None) else None,
        retry_of=retry_of,
        dedup_key=key,
        periodic_task_name=periodic_task_name,
    )
    run.save()
    if key:
        try:
            dedup.dedup_claim(key=key, task_id=prepared.task_id)
        except dedup.KeyHeld as held:
            run.delete()
            error = DuplicateRun(held.holder, key)
            audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
            raise error from None
    try:
        prepared.task.apply_async(args=prepared.args, kwargs=prepared.kwargs, **prepared.message_options())
    except BROKER_ERRORS as exc:
        run.delete()
        if key:
            dedup.dedup_release(key=key, task_id=prepared.task_id)
        logger.warning("Launch of %s refused: broker unavailable (%s)", task_name, exc)
        error = BrokerUnavailable()
        audit_record(**audit, outcome=Outcome.ERROR, message=f"{error} ({exc})")
        raise error from exc
    audit_record(**audit, message=f"Sent to {prepared.queue} at {prepared.priority} priority.")
    logger.info("Launched %s [%s] on %s at %s priority", task_name, prepared.task_id, prepared.queue, prepared.priority)
    return run


def _check_arguments(entry, args, kwargs, leading_arguments, errors) -> None:
    if not isinstance(args, list):
        errors.add("args", "Positional arguments must be a JSON list, e.g. [1, 2].")
    if not isinstance(kwargs, dict):
        errors.add("kwargs", 'Keyword arguments must be a JSON object, e.g. {"name": "value"}.')
    for name, value in (("args", args), ("kwargs", kwargs)):
        try:
            json.dumps(value, allow_nan=False)
        except (TypeError, ValueError) as exc:
            errors.add(name, f"Arguments must be plain JSON values ({exc}).")
    if "args" in errors or "kwargs" in errors:
        return
    try:
        entry.signature.bind(*([None] * leading_arguments), *args, **kwargs)
    except TypeError as exc:
        errors.add("args" if args else "kwargs", f"Arguments do not fit {entry.signature_text}: {exc}.")


def _check_start(countdown, eta, now, errors) -> datetime | None:
    """Return the ETA (None: as soon as possible), from a countdown or a time."""
    limit = settings.TASKCENTER_MAX_COUNTDOWN
    beyond = (
        f"is more than {limit} seconds ahead: the broker would deliver it again and again "
        "(its visibility timeout); use a one-off (clocked) schedule instead."
    )
    if countdown is not None and eta is not None:
        errors.add("countdown", "Give a countdown or an ETA, not both.")
        return None
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int):
            errors.add("countdown", "Countdown must be a whole number of seconds.")
        elif countdown < 0:
            errors.add("countdown", "Countdown cannot be negative.")
        elif countdown > limit:
            errors.add("countdown", f"Countdown cannot exceed {limit} seconds: it {beyond}")
        else:
            return now + timedelta(seconds=countdown) if countdown else None
        return None
    if eta is None:
        return None
    if not isinstance(eta, datetime):
        errors.add("eta", "ETA must be a date and time.")
        return None
    if timezone.is_naive(eta):
        eta = timezone.make_aware(eta)
    if eta < now - ETA_PAST_TOLERANCE:
        errors.add("eta", f"ETA {timezone.localtime(eta):%Y-%m-%d %H:%M:%S %Z} is in the past.")
    elif eta > now + timedelta(seconds=limit):
        errors.add("eta", f"ETA {timezone.localtime(eta):%Y-%m-%d %H:%M:%S %Z} {beyond}")
    else:
        return eta
    return None


def _check_expiry(expires, start, now, errors) -> datetime | None:
    """Return when an unstarted run is dropped (None: never)."""
    if expires is None:
        return None
    if isinstance(expires, bool) or not isinstance(expires, int | datetime):
        errors.add("expires", "Expiry must be a number of seconds or a date and time.")
        return None
    if isinstance(expires, int):
        if expires <= 0:
            errors.add("expires", "Expiry must be a positive number of seconds.")
            return None
        expires = now + timedelta(seconds=expires)
    elif timezone.is_naive(expires):
        expires = timezone.make_aware(expires)
    if expires <= start:
        errors.add("expires", "Expiry must be later than the time the run may start.")
        return None
    return expires
