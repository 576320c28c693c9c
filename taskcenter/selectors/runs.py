"""Queries over the run history, built to stay fast with millions of runs.

A run's state is its own indexed ``state`` column (kept true by the database, see
``Run.state``), so every filter reads ``taskcenter_run`` alone, through an index on
(filter, created_at, id). Pages are cut with keyset pagination on (created_at, id),
newest first: each page is one indexed range walk of ``page_size + 1`` rows, a time
range is walked in page order (never sorted), and no query counts the whole table.
The page's results are then read by their task ids (one query, a page of keys).
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.contrib.auth import get_user_model
from django.db.models import F, Q, QuerySet
from django_celery_results.models import TaskResult

from taskcenter.models import READY_STATES, REVOKED, Batch, Run, Workflow

DEFAULT_PAGE_SIZE = 50
#: The page order: newest first, by creation time then id (the cursor's tie-break).
PAGE_ORDER = ("-created_at", "-id")


@dataclass(frozen=True)
class RunFilters:
    state: str = ""
    task_name: str = ""
    queue: str = ""
    created_from: datetime | None = None
    created_to: datetime | None = None
    periodic_task_name: str = ""
    worker: str = ""  # the worker that ran it (hostname, as recorded on the run)
    launched_by: str = ""  # the username of whoever launched it
    source: str = ""  # a RunSource value
    task_id: str = ""  # exact


@dataclass
class RunPage:
    runs: list[Run]
    newer_cursor: int | None = None  # pass as ``after`` to see the newer page
    older_cursor: int | None = None  # pass as ``before`` to see the older page
    filters: RunFilters = field(default_factory=RunFilters)


def runs_filtered(filters: RunFilters) -> QuerySet[Run]:
    """Runs matching ``filters``, newest first, read from the run table alone (no join)."""
    runs = Run.objects.all()
    if filters.task_id:
        runs = runs.filter(task_result_id=filters.task_id)
    if filters.state:
        runs = runs.filter(state_is(filters.state))
    if filters.task_name:
        runs = runs.filter(task_name=filters.task_name)
    if filters.queue:
        runs = runs.filter(queue=filters.queue)
    if filters.periodic_task_name:
        runs = runs.filter(periodic_task_name=filters.periodic_task_name)
    if filters.worker:  # the result's worker is copied into the run (see Run.state)
        runs = runs.filter(worker=filters.worker)
    if filters.launched_by:
        # The user's id first (one indexed read), so the runs are walked on their own index.
        user_id = get_user_model().objects.filter(username=filters.launched_by).values_list("pk", flat=True).first()
        runs = runs.filter(launched_by_id=user_id) if user_id is not None else runs.none()
    if filters.source:
        runs = runs.filter(source=filters.source)
    if filters.created_from:
        runs = runs.filter(created_at__gte=filters.created_from)
    if filters.created_to:
        runs = runs.filter(created_at__lt=filters.created_to)
    return runs.order_by(*PAGE_ORDER)


def state_is(state: str) -> Q:
    """Runs whose ``Run.state`` is ``state``, as a filter on the indexed column."""
    return Q(recorded_state=state)


def state_expression() -> F:
    """``Run.state`` as an SQL expression (for a subquery's "last state")."""
    return F("recorded_state")


def state_in(states) -> Q:
    """Runs whose ``Run.state`` is one of ``states`` (e.g. ``ACTIVE_STATES``), as a filter."""
    return Q(recorded_state__in=list(states))


def _cursor_position(cursor: int):
    """The (created_at, id) a cursor id stands for; a deleted run's place is taken by the next lower id."""
    created = Run.objects.filter(pk=cursor).values_list("created_at", flat=True).first()
    if created is None:
        created = Run.objects.filter(pk__lt=cursor).order_by("-id").values_list("created_at", flat=True).first()
    return created


def with_results(runs: list[Run]) -> list[Run]:
    """Attach each run's result row (or its absence), read in one query by the page's task ids."""
    results = {r.task_id: r for r in TaskResult.objects.filter(task_id__in=[run.task_id for run in runs]).order_by()}
    for run in runs:
        Run.task_result.field.set_cached_value(run, results.get(run.task_result_id))
    return runs


def runs_page(
    filters: RunFilters,
    *,
    before: int | None = None,
    after: int | None = None,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> RunPage:
    """One page of runs: older than ``before``, newer than ``after``, or the newest.

    A cursor is a run id; the page continues from that run's (created_at, id). The
    bound ``created_at <= c`` is what the index walk starts from; the tie on ``c``
    is settled by id.
    """
    runs = runs_filtered(filters).select_related("launched_by")
    if after is not None:
        created = _cursor_position(after)
        if created is not None:
            runs = runs.filter(created_at__gte=created).exclude(created_at=created, id__lte=after)
        # Walk up from the cursor, then show the page newest first.
        rows = list(runs.order_by("created_at", "id")[: page_size + 1])
        has_newer = len(rows) > page_size
        rows = list(reversed(rows[:page_size]))
        has_older = True
    else:
        if before is not None:
            created = _cursor_position(before)
            runs = (
                runs.filter(created_at__lte=created).exclude(created_at=created, id__gte=before)
                if created is not None
                else runs.none()
            )
        rows = list(runs[: page_size + 1])
        has_older = len(rows) > page_size
        rows = rows[:page_size]
        has_newer = before is not None
    with_results(rows)
    return RunPage(
        runs=rows,
        newer_cursor=rows[0].id if rows and has_newer else None,
        older_cursor=rows[-1].id if rows and has_older else None,
        filters=filters,
    )


def runs_count(filters: RunFilters, *, limit: int) -> tuple[int, bool]:
    """How many runs match ``filters``, counting at most ``limit``: ``(count, capped)``.

    The count reads at most ``limit + 1`` rows, so it stays cheap with millions of runs.
    """
    counted = runs_filtered(filters).order_by().values("pk")[: limit + 1].count()
    return min(counted, limit), counted > limit


def run_by_task_id(task_id: str) -> Run | None:
    """The run with this Celery task id, with its result, or None.

    Not ``select_related("task_result")``: a filter on the link column makes Django
    turn the LEFT JOIN into an INNER JOIN, which would hide runs with no result yet.
    """
    run = Run.objects.select_related("launched_by").filter(task_result_id=task_id).first()
    if run is not None:
        # Cache the result (or its absence) without touching the task id column.
        Run.task_result.field.set_cached_value(run, TaskResult.objects.filter(task_id=task_id).first())
    return run


def runs_by_task_ids(task_ids: list[str]) -> list[Run]:
    """The runs with these task ids, with their results (two queries, whatever the count)."""
    runs = list(Run.objects.filter(task_result_id__in=task_ids))
    results = {r.task_id: r for r in TaskResult.objects.filter(task_id__in=task_ids)}
    for run in runs:
        Run.task_result.field.set_cached_value(run, results.get(run.task_result_id))
    return runs


def runs_for_retry(*, task_ids: list[str], filters: RunFilters, limit: int) -> list[Run]:
    """Finished runs to re-run: the ``task_ids`` given, or else those matching ``filters``."""
    runs = runs_filtered(filters)
    if task_ids:
        runs = runs_filtered(RunFilters()).filter(task_result_id__in=task_ids)
    return with_results(list(runs.filter(state_in(READY_STATES))[:limit]))


@dataclass
class Progress:
    total: int
    done: int
    failed: int
    running: int

    @property
    def finished(self) -> int:
        return self.done + self.failed

    @property
    def percent(self) -> int:
        return round(100 * self.finished / self.total) if self.total else 0


def _progress(runs) -> Progress:
    states = [run.state for run in runs]
    return Progress(
        total=len(states),
        done=states.count("SUCCESS"),
        failed=sum(state in ("FAILURE", REVOKED) for state in states),
        running=states.count("STARTED"),
    )


def batch_progress(batch: Batch) -> dict:
    """Counts of a batch's runs by outcome, and the runs themselves."""
    runs = list(batch.runs.select_related("task_result").order_by("id"))
    return {"batch": batch, "runs": runs, "progress": _progress(runs)}


def workflow_graph(workflow: Workflow) -> dict:
    """The workflow's stages with each node's run (and state), for drawing the graph."""
    runs = {run.task_id: run for run in workflow.runs.select_related("task_result")}
    stages = [[runs.get(task_id) or task_id for task_id in stage] for stage in workflow.stages]
    return {"workflow": workflow, "stages": stages, "progress": _progress(runs.values())}


def run_lineage(run: Run, *, limit: int = 50) -> list[str]:
    """Task ids of the runs ``run`` repeats, from the first one to ``run`` itself (at most ``limit``)."""
    task_ids, current = [run.task_id], run
    while current.retry_of_id and len(task_ids) < limit:
        current = Run.objects.only("task_result_id", "retry_of_id").filter(pk=current.retry_of_id).first()
        if current is None:
            break
        task_ids.append(current.task_id)
    return list(reversed(task_ids))
