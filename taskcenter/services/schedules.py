"""Periodic tasks (django-celery-beat schedules): create, change, enable, delete, run now.

Every write to a periodic task (schedule pages, admin, ``manage.py schedule``) goes
through these functions, which check the actor's permission for the task (``actor``
None is the system: beat, or the command line without ``--user``) and write the
audit trail. Message options that could rename a sent task or reuse a task id
(headers, exchange, routing key) are never set and are cleared on every save. Bulk
changes use ``QuerySet.update``, which skips django-celery-beat's signals, so they
call ``PeriodicTasks.update_changed()`` to make beat reload.
"""

import dataclasses
import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.translation import gettext, ngettext
from django_celery_beat.models import (
    SOLAR_SCHEDULES,
    ClockedSchedule,
    CrontabSchedule,
    IntervalSchedule,
    PeriodicTask,
    PeriodicTasks,
    SolarSchedule,
)

from taskcenter import catalogue, permissions, secret_arguments
from taskcenter.models import Run, RunSource, SchedulePolicy
from taskcenter.priorities import Priority
from taskcenter.safe_input import JSONInputError, parse_json
from taskcenter.schedules.timing import CronFields
from taskcenter.selectors.schedules import crontab_zone_name, schedule_describe
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import Forbidden, InvalidInput, ServiceError
from taskcenter.services.launch import FieldErrors, InvalidLaunch, launch_prepare, run_launch

logger = logging.getLogger(__name__)

KINDS = ("interval", "crontab", "clocked", "solar")
PERIODS = ("seconds", "minutes", "hours", "days")
#: Largest value of a whole-number schedule field (the database's 32-bit integer columns).
MAX_INT = 2_147_483_647
#: Longest interval, per period: about 100 years (Celery's timedelta arithmetic overflows far beyond).
MAX_EVERY = {"seconds": 3_153_600_000, "minutes": 52_560_000, "hours": 876_000, "days": 36_500}


class ScheduleForbidden(Forbidden):
    """The actor may not do this to this schedule."""


class InvalidSchedule(InvalidInput):
    """A schedule's input is wrong; ``errors`` maps field to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__(errors=errors)


@dataclass
class ScheduleSpec:
    """Everything that defines a periodic task, in plain values."""

    name: str
    task: str
    kind: str  # one of KINDS
    every: int | None = None  # interval
    period: str = "minutes"  # interval: one of PERIODS
    cron: str = ""  # crontab: "minute hour day-of-month month day-of-week"
    timezone: str = ""  # crontab; empty: settings.TIME_ZONE
    clocked_time: datetime | None = None  # clocked (one-off)
    solar_event: str = ""  # solar, e.g. "sunrise"
    latitude: float | None = None
    longitude: float | None = None
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    queue: str = ""
    priority: str = ""  # a Priority name; empty: the task's own
    expire_seconds: int | None = None
    enabled: bool = True
    description: str = ""
    misfire: str = SchedulePolicy.Misfire.RUN_ONCE
    grace_seconds: int | None = None
    jitter_seconds: int = 0
    max_instances: int = 0

    def masked(self) -> "ScheduleSpec":
        """A copy with the task's secret arguments masked, to show on a page or in a form."""
        args, kwargs, _ = secret_arguments.mask(catalogue.get_entry(self.task), self.args, self.kwargs)
        return dataclasses.replace(self, args=args, kwargs=kwargs)

    @classmethod
    def from_periodic_task(cls, task: PeriodicTask) -> "ScheduleSpec":
        """The spec of an existing periodic task (to edit or duplicate it)."""
        policy = SchedulePolicy.objects.filter(periodic_task=task).first() or SchedulePolicy()
        spec = cls(
            name=task.name,
            task=task.task,
            kind=schedule_kind(task),
            args=_stored_json(task.args, []),
            kwargs=_stored_json(task.kwargs, {}),
            queue=task.queue or "",
            priority=Priority.from_broker(task.priority).value if task.priority is not None else "",
            expire_seconds=task.expire_seconds,
            enabled=task.enabled,
            description=task.description,
            misfire=policy.misfire,
            grace_seconds=policy.grace_seconds,
            jitter_seconds=policy.jitter_seconds,
            max_instances=policy.max_instances,
        )
        if task.interval_id:
            spec.every, spec.period = task.interval.every, task.interval.period
        elif task.crontab_id:
            c = task.crontab
            spec.cron = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
            spec.timezone = crontab_zone_name(task)
        elif task.clocked_id:
            spec.clocked_time = task.clocked.clocked_time
        elif task.solar_id:
            s = task.solar
            spec.solar_event, spec.latitude, spec.longitude = s.event, float(s.latitude), float(s.longitude)
        return spec


def _with_kept_secrets(spec: ScheduleSpec, existing: PeriodicTask | None) -> ScheduleSpec:
    """Put back the stored value of each secret argument the form still shows masked."""
    entry = catalogue.get_entry(spec.task)

    def stored_secrets() -> dict:
        if existing is None or existing.task != spec.task:
            return {}
        stored = ScheduleSpec.from_periodic_task(existing)
        return secret_arguments.mask(entry, stored.args, stored.kwargs)[2]

    try:
        args, kwargs = secret_arguments.fill_masked(entry, spec.args, spec.kwargs, stored_secrets)
    except secret_arguments.SecretUnavailable as missing:
        raise InvalidSchedule(
            {"args": [gettext("Enter the secret argument %(name)s again.") % {"name": repr(missing.name)}]}
        ) from None
    return dataclasses.replace(spec, args=args, kwargs=kwargs)


def _stored_json(text: str | None, default):
    """A stored JSON column, within taskcenter's input limits; the default when it is unusable."""
    try:
        return parse_json(text) if text else default
    except JSONInputError:
        return default


def schedule_kind(task: PeriodicTask) -> str:
    for kind in KINDS:
        if getattr(task, f"{kind}_id", None):
            return kind
    return ""


def schedule_save(*, spec: ScheduleSpec, actor, existing: PeriodicTask | None = None) -> PeriodicTask:
    """Create a periodic task from ``spec``, or change ``existing``; raise ``InvalidSchedule``.

    The actor needs the right to add (or change) periodic tasks and to launch both the
    task scheduled and, on a change, the task it replaces.
    """
    if existing is None:
        _require(
            actor,
            lambda user: permissions.can_add_schedule(user, spec.task),
            gettext("You may not schedule %(task)s.") % {"task": spec.task},
        )
    else:
        _require(
            actor,
            lambda user: (
                permissions.can_change_schedule(user, spec.task)
                and permissions.can_change_schedule(user, existing.task)
            ),
            gettext("You may not change the schedule %(name)s.") % {"name": existing.name},
        )
    spec = _with_kept_secrets(spec, existing)
    errors = FieldErrors()
    _check_spec(spec, errors, creating=existing is None)
    if errors:
        raise InvalidSchedule(dict(errors))
    try:
        with transaction.atomic():
            task = existing or PeriodicTask()
            task.name = spec.name
            task.task = spec.task
            task.args, task.kwargs = json.dumps(spec.args), json.dumps(spec.kwargs)
            task.queue = spec.queue or None
            task.priority = Priority(spec.priority).broker_priority if spec.priority else None
            task.expire_seconds = spec.expire_seconds
            task.enabled = spec.enabled
            task.description = spec.description
            # Never set by taskcenter; a stored value could rename the task or reuse a task id.
            task.headers, task.exchange, task.routing_key = "{}", None, None
            task.one_off = spec.kind == "clocked"
            task.interval = task.crontab = task.clocked = task.solar = None
            setattr(task, spec.kind, _schedule_row(spec))
            task.save()
            SchedulePolicy.objects.update_or_create(
                periodic_task=task,
                defaults={
                    "misfire": spec.misfire,
                    "grace_seconds": spec.grace_seconds,
                    "jitter_seconds": spec.jitter_seconds,
                    "max_instances": spec.max_instances,
                    "error": "",  # a saved schedule is evaluated afresh
                    "error_at": None,
                },
            )
    except IntegrityError:
        raise InvalidSchedule(
            {"name": [gettext("A schedule named %(name)s already exists.") % {"name": repr(spec.name)}]}
        ) from None
    except ValidationError as exc:  # PeriodicTask.save() validates uniqueness and the schedule itself
        raise InvalidSchedule(
            {field: list(messages) for field, messages in exc.message_dict.items()}
            if hasattr(exc, "error_dict")
            else {"name": exc.messages}
        ) from None
    action = Action.SCHEDULE_UPDATE if existing else Action.SCHEDULE_CREATE
    audit_record(actor=actor, action=action, target=task.name, message=schedule_describe(task))
    return task


def _check_spec(spec: ScheduleSpec, errors: FieldErrors, *, creating: bool) -> None:
    if not spec.name.strip():
        errors.add("name", gettext("Give the schedule a name."))
    if spec.kind not in KINDS:
        errors.add(
            "kind",
            gettext("Unknown schedule kind %(kind)s; use %(choices)s.")
            % {"kind": repr(spec.kind), "choices": ", ".join(KINDS)},
        )
    elif spec.kind == "interval":
        if spec.period not in PERIODS:
            errors.add(
                "period",
                gettext("Unknown period %(period)s; use %(choices)s.")
                % {"period": repr(spec.period), "choices": ", ".join(PERIODS)},
            )
        if isinstance(spec.every, bool) or not isinstance(spec.every, int) or spec.every < 1:
            errors.add("every", gettext("Run every N units, with N a whole number of at least 1."))
        elif spec.every > min(MAX_INT, MAX_EVERY.get(spec.period, MAX_INT)):
            limit = min(MAX_INT, MAX_EVERY.get(spec.period, MAX_INT))
            errors.add(
                "every",
                gettext("Every must be at most %(limit)s %(period)s (about 100 years).")
                % {"limit": limit, "period": spec.period},
            )
    elif spec.kind == "crontab":
        _check_cron(spec, errors)
    elif spec.kind == "clocked":
        if spec.clocked_time is None:
            errors.add("clocked_time", gettext("Give the date and time of the one-off run."))
        elif creating and spec.clocked_time <= timezone.now():
            errors.add("clocked_time", gettext("The time of a new one-off run must be in the future."))
    elif spec.kind == "solar":
        if spec.solar_event not in dict(SOLAR_SCHEDULES):
            errors.add(
                "solar_event",
                gettext("Unknown solar event; use one of %(choices)s.") % {"choices": ", ".join(dict(SOLAR_SCHEDULES))},
            )
        if spec.latitude is None or not -90 <= spec.latitude <= 90:
            errors.add("latitude", gettext("Latitude must be between -90 and 90."))
        if spec.longitude is None or not -180 <= spec.longitude <= 180:
            errors.add("longitude", gettext("Longitude must be between -180 and 180."))
    if spec.misfire not in SchedulePolicy.Misfire.values:
        errors.add("misfire", gettext("Choose run_once or skip."))
    for name in ("grace_seconds", "expire_seconds"):
        value = getattr(spec, name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_INT):
            errors.add(name, gettext("Must be a whole number of seconds from 1 to %(limit)s.") % {"limit": MAX_INT})
    for name in ("jitter_seconds", "max_instances"):
        value = getattr(spec, name)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_INT:
            errors.add(name, gettext("Must be a whole number from 0 to %(limit)s.") % {"limit": MAX_INT})
    if isinstance(spec.jitter_seconds, int) and spec.jitter_seconds > settings.TASKCENTER_MAX_COUNTDOWN:
        errors.add(
            "jitter_seconds",
            gettext("Jitter cannot exceed %(limit)s seconds.") % {"limit": settings.TASKCENTER_MAX_COUNTDOWN},
        )
    if spec.priority and spec.priority not in Priority.__members__:
        errors.add(
            "priority",
            gettext("Unknown priority %(priority)s; use one of %(choices)s.")
            % {"priority": repr(spec.priority), "choices": ", ".join(Priority.__members__)},
        )
    try:
        launch_prepare(task_name=spec.task, args=spec.args, kwargs=spec.kwargs, queue=spec.queue or None)
    except InvalidLaunch as exc:
        for name, messages in exc.errors.items():
            for message in messages:
                errors.add(name, message)
    except ServiceError as exc:
        errors.add("task", gettext("%(error)s Only catalogued tasks can be scheduled.") % {"error": exc})


def _require(actor, allowed, message: str) -> None:
    """Refuse a write ``allowed(actor)`` denies; ``actor`` None is the system (beat, the command line)."""
    if actor is not None and not allowed(actor):
        raise ScheduleForbidden(message)


def _check_cron(spec: ScheduleSpec, errors: FieldErrors) -> None:
    parts = spec.cron.split()
    if len(parts) != 5:
        errors.add(
            "cron", gettext('A crontab has five fields: minute hour day-of-month month day-of-week, e.g. "0 2 * * *".')
        )
    else:
        try:
            CronFields.parse(*_cron_order(parts))
        except (ValueError, TypeError) as exc:
            errors.add("cron", gettext("Not a valid crontab: %(error)s.") % {"error": exc})
    try:
        ZoneInfo(spec.timezone or settings.TIME_ZONE)
    except (ZoneInfoNotFoundError, ValueError):
        errors.add(
            "timezone", gettext("Unknown time zone %(zone)s, e.g. Europe/Berlin.") % {"zone": repr(spec.timezone)}
        )


def _cron_order(parts: list[str]) -> tuple[str, str, str, str, str]:
    minute, hour, day_of_month, month_of_year, day_of_week = parts
    return minute, hour, day_of_month, month_of_year, day_of_week


def _schedule_row(spec: ScheduleSpec):
    if spec.kind == "interval":
        return IntervalSchedule.objects.get_or_create(every=spec.every, period=spec.period)[0]
    if spec.kind == "crontab":
        minute, hour, day_of_month, month_of_year, day_of_week = spec.cron.split()
        return CrontabSchedule.objects.get_or_create(
            minute=minute,
            hour=hour,
            day_of_month=day_of_month,
            month_of_year=month_of_year,
            day_of_week=day_of_week,
            timezone=spec.timezone or settings.TIME_ZONE,
        )[0]
    if spec.kind == "clocked":
        return ClockedSchedule.objects.create(clocked_time=spec.clocked_time)
    return SolarSchedule.objects.get_or_create(
        event=spec.solar_event, latitude=round(spec.latitude, 6), longitude=round(spec.longitude, 6)
    )[0]


def schedules_set_enabled(*, periodic_tasks: Iterable[PeriodicTask], enabled: bool, actor) -> int:
    """Enable or disable periodic tasks in one update, and make beat reload."""
    tasks = list(periodic_tasks)
    for task in tasks:
        _require(
            actor,
            lambda user, name=task.task: permissions.can_change_schedule(user, name),
            gettext("You may not change %(name)s.") % {"name": task.name},
        )
    changes = {"enabled": enabled} if enabled else {"enabled": False, "last_run_at": None}
    count = PeriodicTask.objects.filter(pk__in=[t.pk for t in tasks]).update(**changes)
    PeriodicTasks.update_changed()
    action = Action.SCHEDULE_ENABLE if enabled else Action.SCHEDULE_DISABLE
    for task in tasks:
        audit_record(actor=actor, action=action, target=task.name)
    return count


def schedule_duplicate(*, periodic_task: PeriodicTask, actor, name: str | None = None) -> PeriodicTask:
    """Copy a schedule under a new name, disabled, so it can be reviewed before it fires."""
    _require(
        actor,
        lambda user: permissions.can_add_schedule(user, periodic_task.task),
        gettext("You may not copy %(name)s.") % {"name": periodic_task.name},
    )
    spec = ScheduleSpec.from_periodic_task(periodic_task)
    spec.name = name or _free_copy_name(periodic_task.name)
    spec.enabled = False
    if spec.kind == "clocked" and spec.clocked_time and spec.clocked_time <= timezone.now():
        raise InvalidSchedule({"clocked_time": [gettext("A one-off schedule in the past cannot be duplicated.")]})
    copy = schedule_save(spec=spec, actor=actor)
    audit_record(
        actor=actor,
        action=Action.SCHEDULE_DUPLICATE,
        target=periodic_task.name,
        message=gettext("as %(name)s") % {"name": copy.name},
    )
    return copy


def _free_copy_name(name: str) -> str:
    for n in range(1, 1000):
        candidate = f"{name} (copy{'' if n == 1 else f' {n}'})"[:200]
        if not PeriodicTask.objects.filter(name=candidate).exists():
            return candidate
    raise InvalidSchedule({"name": [gettext("Too many copies of this schedule.")]})


def schedule_delete(*, periodic_task: PeriodicTask, actor) -> None:
    """Delete a schedule (its past runs stay in the history)."""
    _require(
        actor, permissions.can_delete_schedule, gettext("You may not delete %(name)s.") % {"name": periodic_task.name}
    )
    name = periodic_task.name
    periodic_task.delete()
    audit_record(actor=actor, action=Action.SCHEDULE_DELETE, target=name)


def schedule_run_now(*, periodic_task: PeriodicTask, actor, source: RunSource = RunSource.SCHEDULE) -> Run:
    """Launch a schedule's task now, with its arguments, queue, priority and expiry.

    ``source`` is the entry point that asked (page, admin, command line); the run keeps
    the schedule's name either way.
    """
    _require(
        actor,
        lambda user: permissions.can_launch(user, periodic_task.task),
        gettext("You may not run %(name)s.") % {"name": periodic_task.name},
    )
    try:
        args = parse_json(periodic_task.args or "[]")
        kwargs = parse_json(periodic_task.kwargs or "{}")
    except JSONInputError as exc:
        raise InvalidLaunch(
            {"args": [gettext("The schedule's arguments are not valid JSON: %(error)s.") % {"error": exc}]}
        ) from None
    priority = Priority.from_broker(periodic_task.priority) if periodic_task.priority is not None else None
    run = run_launch(
        task_name=periodic_task.task,
        args=args,
        kwargs=kwargs,
        queue=periodic_task.queue or None,
        priority=priority,
        expires=periodic_task.expires or periodic_task.expire_seconds,
        launched_by=actor,
        source=source,
        periodic_task_name=periodic_task.name,
    )
    audit_record(actor=actor, action=Action.SCHEDULE_RUN_NOW, target=periodic_task.name, task_id=run.task_id)
    return run


SCHEDULE_ACTIONS = ("run_now", "enable", "disable", "duplicate", "delete")


def schedules_act(
    *, action: str, periodic_tasks: list[PeriodicTask], actor, source: RunSource = RunSource.WEB
) -> tuple[list[str], list[str]]:
    """Apply one action to several schedules (the pages' and the admin's bulk actions).

    Returns ``(done, failed)``: what was done and what was refused, one line each, for
    the operator. A schedule that fails (a broker that is down, a one-off in the past)
    does not stop the others. Each function checks the actor's permission; callers
    check ``permissions.can_act_on_schedule`` first to refuse the whole request.
    """
    if action not in SCHEDULE_ACTIONS:
        raise ValueError(f"unknown schedule action {action!r}")
    if action in ("enable", "disable"):
        try:
            count = schedules_set_enabled(periodic_tasks=periodic_tasks, enabled=action == "enable", actor=actor)
        except ServiceError as exc:
            return [], [str(exc)]
        done = (
            ngettext("Enabled %(count)d schedule(s).", "Enabled %(count)d schedule(s).", count)
            if action == "enable"
            else ngettext("Disabled %(count)d schedule(s).", "Disabled %(count)d schedule(s).", count)
        )
        return [done % {"count": count}], []
    done, failed = [], []
    for task in periodic_tasks:
        try:
            if action == "run_now":
                run = schedule_run_now(periodic_task=task, actor=actor, source=source)
                done.append(
                    gettext("Launched %(name)s now (%(task_id)s).") % {"name": task.name, "task_id": run.task_id}
                )
            elif action == "duplicate":
                copy = schedule_duplicate(periodic_task=task, actor=actor)
                done.append(
                    gettext("Duplicated %(name)s as %(copy)s (disabled until you enable it).")
                    % {"name": task.name, "copy": copy.name}
                )
            else:
                schedule_delete(periodic_task=task, actor=actor)
                done.append(gettext("Deleted %(name)s; its runs stay in the history.") % {"name": task.name})
        except ServiceError as exc:
            failed.append(f"{task.name}: {exc}")
    return done, failed


#: Longest error message kept per schedule.
MAX_ERROR_CHARS = 2000


def schedule_mark_error(*, name: str, error: str) -> bool:
    """Record that beat could not evaluate or send the schedule ``name``, and audit it; False if it is gone.

    Shown on the schedule's page, in the list and on the alerts page until the schedule
    is saved again or beat sends it.
    """
    error = error[:MAX_ERROR_CHARS]
    pk = PeriodicTask.objects.filter(name=name).values_list("pk", flat=True).first()
    if pk is None:
        return False
    now = timezone.now()
    if not SchedulePolicy.objects.filter(periodic_task_id=pk).update(error=error, error_at=now):
        SchedulePolicy.objects.update_or_create(periodic_task_id=pk, defaults={"error": error, "error_at": now})
    logger.error("Schedule %s is in error: %s", name, error)
    audit_record(actor=None, action=Action.SCHEDULE_ERROR, target=name, outcome=Outcome.ERROR, message=error)
    return True


def schedule_clear_error(*, name: str) -> None:
    """Forget the error of schedule ``name`` (beat sent it again)."""
    SchedulePolicy.objects.filter(periodic_task__name=name).exclude(error="").update(error="", error_at=None)
