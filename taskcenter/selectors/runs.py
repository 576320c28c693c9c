"""Queries over the run history, built to stay fast with millions of runs.

Pages are cut with keyset pagination on the primary key (newest first): each
page is one indexed range scan of ``page_size + 1`` rows, and no query counts
the whole table.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.db.models import QuerySet

from taskcenter.models import PENDING, Run

DEFAULT_PAGE_SIZE = 50


@dataclass(frozen=True)
class RunFilters:
    state: str = ""
    task_name: str = ""
    queue: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None


@dataclass
class RunPage:
    runs: list[Run]
    newer_cursor: int | None = None  # pass as ``after`` to see the newer page
    older_cursor: int | None = None  # pass as ``before`` to see the older page
    filters: RunFilters = field(default_factory=RunFilters)


def runs_filtered(filters: RunFilters) -> QuerySet[Run]:
    """Runs matching ``filters``, with their results joined in, newest first."""
    runs = Run.objects.select_related("task_result", "launched_by")
    if filters.state == PENDING:
        runs = runs.filter(task_result__status__isnull=True)
    elif filters.state:
        runs = runs.filter(task_result__status=filters.state)
    if filters.task_name:
        runs = runs.filter(task_name=filters.task_name)
    if filters.queue:
        runs = runs.filter(queue=filters.queue)
    if filters.created_from:
        runs = runs.filter(created_at__gte=filters.created_from)
    if filters.created_to:
        runs = runs.filter(created_at__lt=filters.created_to)
    return runs.order_by("-id")


def runs_page(
    filters: RunFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> RunPage:
    """One page of runs: older than ``before``, newer than ``after``, or the newest."""
    runs = runs_filtered(filters)
    if after is not None:
        # Walk up from the cursor, then show the page newest first.
        rows = list(runs.filter(id__gt=after).order_by("id")[: page_size + 1])
        has_newer = len(rows) > page_size
        rows = list(reversed(rows[:page_size]))
        has_older = True
    else:
        if before is not None:
            runs = runs.filter(id__lt=before)
        rows = list(runs[: page_size + 1])
        has_older = len(rows) > page_size
        rows = rows[:page_size]
        has_newer = before is not None
    return RunPage(
        runs=rows,
        newer_cursor=rows[0].id if rows and has_newer else None,
        older_cursor=rows[-1].id if rows and has_older else None,
        filters=filters,
    )


def run_by_task_id(task_id: str) -> Run | None:
    """The run with this Celery task id, with its result, or None."""
    return Run.objects.select_related("task_result", "launched_by").filter(task_result_id=task_id).first()
