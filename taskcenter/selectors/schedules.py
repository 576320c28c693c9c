"""Queries over periodic tasks, with what an operator needs to judge each one."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from taskcenter.models import Run
from taskcenter.schedules.timing import FireTime
from taskcenter.services.schedules import schedule_describe, schedule_next_runs, schedule_timezone

#: Window of the run and failure counts shown per schedule (bounded, so cheap at any history size).
COUNT_WINDOW = timedelta(days=7)
PAGE_SIZE = 100


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
    latest = Run.objects.filter(periodic_task_name=OuterRef("name")).order_by("-id")
    tasks = (
        PeriodicTask.objects.select_related("interval", "crontab", "clocked", "solar", "taskcenter_policy")
        .annotate(
            last_task_id=Subquery(latest.values("task_result_id")[:1]),
            last_sent_at=Subquery(latest.values("created_at")[:1]),
            last_state=Subquery(latest.values("task_result__status")[:1]),
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
        Run.objects.filter(periodic_task_name__in=names, created_at__gte=since)
        .values("periodic_task_name")
        .annotate(total=Count("id"), failed=Count("id", filter=Q(task_result__status="FAILURE")))
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
    return Run.objects.filter(periodic_task_name=task.name).select_related("task_result").order_by("-id").first()


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
