"""Queries over periodic tasks, with what an operator needs to judge each one."""

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from django.conf import settings
from django.db.models import Count, OuterRef, Q, Subquery, TextField
from django.db.models.functions import Cast
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from taskcenter.models import SENT_BY_SCHEDULE, Run
from taskcenter.schedules.timing import CronFields, FireTime, next_fire_times
from taskcenter.selectors.runs import state_expression, state_is
from taskcenter.zones import local_text

logger = logging.getLogger(__name__)

#: Window of the run and failure counts shown per schedule (bounded, so cheap at any history size).
COUNT_WINDOW = timedelta(days=7)
PAGE_SIZE = 100


def periodic_tasks():
    """Periodic tasks with their schedule rows and policy, safe to read whatever a row holds.

    A crontab's time zone is read as text (``crontab_zone``): django-celery-beat's field
    raises on a name it does not know, which would break every page listing the row.
    """
    return (
        PeriodicTask.objects.select_related("interval", "crontab", "clocked", "solar", "taskcenter_policy")
        .defer("crontab__timezone")
        .annotate(crontab_zone=Cast("crontab__timezone", TextField()))
    )


def crontab_zone_name(task: PeriodicTask) -> str:
    """The name of a crontab's time zone as stored (``periodic_tasks()`` reads it without converting it)."""
    name = getattr(task, "crontab_zone", None)
    return name if name is not None else str(task.crontab.timezone)


@dataclass
class ScheduleRow:
    task: PeriodicTask
    description: str
    timezone: str
    next_run: FireTime | None
    last_state: str | None
    last_task_id: str | None
    last_run_at: datetime | None  # when the latest run was sent (taskcenter's Run rows)
    runs: int
    failures: int
    error: str = ""  # why beat could not evaluate or send it; empty: fine


def schedules_overview(
    *, search: str = "", enabled: bool | None = None, after: str = "", offset: int = 0, limit: int = PAGE_SIZE
) -> list[ScheduleRow]:
    """A page of schedules by name, with last run state, next run and counts over ``COUNT_WINDOW``.

    ``after`` pages by name (keyset: the names are unique and indexed), so any page of
    10,000 schedules costs the same; ``offset`` is for the command line's full listing.
    """
    latest = Run.objects.filter(SENT_BY_SCHEDULE, periodic_task_name=OuterRef("name")).order_by("-id")
    tasks = (
        periodic_tasks()
        .annotate(
            last_task_id=Subquery(latest.values("task_result_id")[:1]),
            last_sent_at=Subquery(latest.values("created_at")[:1]),
            last_state=Subquery(latest.annotate(state_now=state_expression()).values("state_now")[:1]),
        )
        .order_by("name")
    )
    if search:
        tasks = tasks.filter(Q(name__icontains=search) | Q(task__icontains=search))
    if enabled is not None:
        tasks = tasks.filter(enabled=enabled)
    if after:
        tasks = tasks.filter(name__gt=after)
    tasks = list(tasks[offset : offset + limit])
    counts = _counts([t.name for t in tasks])
    return [
        ScheduleRow(
            task=t,
            description=schedule_describe(t),
            timezone=str(schedule_timezone(t)),
            next_run=next(iter(schedule_next_runs(t, count=1)), None),
            last_state=t.last_state or ("PENDING" if t.last_task_id else None),
            last_task_id=t.last_task_id,
            last_run_at=t.last_sent_at,
            error=schedule_error(t),
            runs=counts.get(t.name, (0, 0))[0],
            failures=counts.get(t.name, (0, 0))[1],
        )
        for t in tasks
    ]


def _counts(names: list[str]) -> dict[str, tuple[int, int]]:
    since = timezone.now() - COUNT_WINDOW
    rows = (
        Run.objects.filter(SENT_BY_SCHEDULE, periodic_task_name__in=names, created_at__gte=since)
        .values("periodic_task_name")
        .annotate(total=Count("id"), failed=Count("id", filter=state_is("FAILURE")))
    )
    return {row["periodic_task_name"]: (row["total"], row["failed"]) for row in rows}


def schedule_error(task: PeriodicTask) -> str:
    """Why beat could not evaluate or send ``task`` (empty: fine)."""
    return getattr(getattr(task, "taskcenter_policy", None), "error", "") or ""


def schedule_last_run(task: PeriodicTask) -> Run | None:
    """The latest run of a schedule, from taskcenter's Run rows.

    Not ``PeriodicTask.last_run_at``: django-celery-beat clears it when a schedule is
    disabled, and a one-off resets its run count when it disables itself.
    """
    runs = Run.objects.filter(SENT_BY_SCHEDULE, periodic_task_name=task.name)
    return runs.select_related("task_result").order_by("-id").first()


def schedule_run_count(task: PeriodicTask) -> int:
    """Runs of a schedule over ``COUNT_WINDOW``."""
    return _counts([task.name]).get(task.name, (0, 0))[0]


def schedules_in_error(*, limit: int = 50) -> list[tuple[str, str]]:
    """``(name, error)`` of the schedules beat marked in error, most recent first."""
    rows = (
        PeriodicTask.objects.exclude(taskcenter_policy__error="")
        .filter(taskcenter_policy__isnull=False)
        .order_by("-taskcenter_policy__error_at")
        .values_list("name", "taskcenter_policy__error")[:limit]
    )
    return list(rows)


def schedule_describe(task: PeriodicTask) -> str:
    """The schedule in words, e.g. "At 02:00 AM (Asia/Shanghai)" or "every 5 minutes"."""
    if task.crontab_id:
        from cron_descriptor import get_description

        c = task.crontab
        expression = f"{c.minute} {c.hour} {c.day_of_month} {c.month_of_year} {c.day_of_week}"
        zone = crontab_zone_name(task)
        try:
            return f"{get_description(expression)} ({zone})"
        except Exception:  # cron-descriptor cannot describe every Celery crontab
            return f"{expression} ({zone})"
    if task.interval_id:
        return str(task.interval)
    if task.clocked_id:
        return f"once at {local_text(task.clocked.clocked_time)}"
    if task.solar_id:
        return str(task.solar)
    return "no schedule"


def schedule_timezone(task: PeriodicTask) -> ZoneInfo:
    """The zone a schedule's times are shown in: its crontab's, else the site's (also for an unknown name)."""
    if task.crontab_id:
        try:
            return ZoneInfo(crontab_zone_name(task))
        except (ZoneInfoNotFoundError, ValueError):
            return ZoneInfo(settings.TIME_ZONE)
    return ZoneInfo(settings.TIME_ZONE)


def schedule_next_runs(task: PeriodicTask, *, count: int = 10, now: datetime | None = None) -> list[FireTime]:
    """The next ``count`` run times in the schedule's time zone (DST changes flagged).

    A schedule that cannot be evaluated (a row written around the forms) has none;
    beat marks it in error.
    """
    now = now or timezone.now()
    if not task.enabled:
        return []
    try:
        return _next_runs(task, count, now)
    except Exception:  # a corrupt row must not break a page; beat reports the error
        logger.warning("Next runs of schedule %s could not be computed", task.name, exc_info=True)
        return []


def _next_runs(task: PeriodicTask, count: int, now: datetime) -> list[FireTime]:
    tz = schedule_timezone(task)
    if task.crontab_id:
        c = task.crontab
        fields = CronFields.parse(c.minute, c.hour, c.day_of_month, c.month_of_year, c.day_of_week)
        return next_fire_times(fields, tz, now, count)
    if task.interval_id:
        step = task.interval.schedule.run_every
        start = task.last_run_at or task.start_time or now
        first = start + step
        while first < now:
            first += step * max(1, int((now - first) / step))
        return [FireTime((first + step * i).astimezone(tz)) for i in range(count)]
    if task.clocked_id:
        at = task.clocked.clocked_time
        return [FireTime(at.astimezone(tz))] if at > now or task.last_run_at is None else []
    if task.solar_id:
        return _solar_next_runs(task.solar.schedule, tz, now, count)
    return []


def _solar_next_runs(schedule, tz: ZoneInfo, now: datetime, count: int) -> list[FireTime]:
    """The next solar events (Celery's ``solar`` computes them with ephem)."""
    fires, after = [], now
    for _ in range(count):
        # remaining_estimate() measures from the schedule's "now"; add it back to get the event.
        at = schedule.now() + schedule.remaining_estimate(after)
        fires.append(FireTime(at.astimezone(tz)))
        after = at + timedelta(minutes=1)
    return fires
