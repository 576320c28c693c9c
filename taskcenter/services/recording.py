"""Record runs that were published outside the launch service (beat, application code).

The launch service writes its runs itself and marks the task ids it is
publishing in this process (``launch_publishing``); the publish signal skips
only those. The mark lives in process memory, so nothing in a message (a
header set by a schedule or a plain client) can hide a run from the history.
"""

import logging
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from celery.states import FAILURE, SUCCESS
from django.db import DatabaseError, connection, transaction
from django.db.models import OuterRef, Subquery
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter import catalogue, secret_arguments
from taskcenter.models import Run, RunSource
from taskcenter.priorities import Priority

logger = logging.getLogger(__name__)

#: Header the publish signal adds so the priority reaches the after-publish hook.
PRIORITY_HEADER = "taskcenter_priority"
#: Header with the publisher's clock (Unix seconds) when the message was sent.
SENT_AT_HEADER = "taskcenter_sent_at"

#: While set (``runs_collected``), published runs are appended here instead of written one by one.
_collector: ContextVar[list | None] = ContextVar("taskcenter_run_collector", default=None)
#: Task ids the launch service is publishing in this process (it has written their runs).
_launching: ContextVar[frozenset] = ContextVar("taskcenter_launching", default=frozenset())


@contextmanager
def launch_publishing(task_ids):
    """Mark ``task_ids`` as recorded by the launch service while its publish runs in this block."""
    token = _launching.set(_launching.get() | frozenset(task_ids))
    try:
        yield
    finally:
        _launching.reset(token)


def recorded_by_launch(task_id: str) -> bool:
    """True while the launch service of this process publishes ``task_id`` (its run is written)."""
    return task_id in _launching.get()


@contextmanager
def runs_collected(into: list):
    """Collect the Run rows of the publishes in this block in ``into`` instead of writing each.

    Beat sends many runs per tick; it writes them with ``runs_write()`` in the same
    transaction as the schedules' ``last_run_at``, instead of one commit per run.
    """
    token = _collector.set(into)
    try:
        yield into
    finally:
        _collector.reset(token)


def runs_write(runs: list[Run]) -> None:
    """Insert collected runs in batches; rows the launch service already wrote are kept. Raises DatabaseError."""
    Run.objects.bulk_create(runs, batch_size=500, ignore_conflicts=True)
    if connection.vendor == "postgresql":
        task_ids = [run.task_result_id for run in runs]
        # After the commit: beat writes its runs inside its sync's transaction, and only a
        # committed run is seen by the result's trigger.
        transaction.on_commit(lambda: _final_states_catch_up(task_ids), robust=True)


def _final_states_catch_up(task_ids: list[str]) -> int:
    """Copy a final result state into runs whose INSERT raced the worker's write (PostgreSQL).

    These runs are written after their message was published, so a fast worker may
    store its result while the INSERT is not yet committed: the result's trigger does
    not see the uncommitted run, and the run's trigger read the result before it
    changed, so the run would stay STARTED. Once the INSERT is committed, any later
    result write reaches the run through its trigger; this one UPDATE, run after the
    commit, covers the writes in between. SQLite runs one writer at a time, so it has no such window.
    """
    final = (SUCCESS, FAILURE)
    return (
        Run.objects.filter(task_result_id__in=task_ids, task_result__status__in=final)
        .exclude(recorded_state__in=final)
        .update(
            recorded_state=Subquery(TaskResult.objects.filter(task_id=OuterRef("task_result_id")).values("status")[:1])
        )
    )


def run_record_published(*, task_id: str, task_name: str, queue: str, headers: dict, body) -> None:
    """Write the Run of a task someone else published, in one INSERT (or collect it, see ``runs_collected``).

    Called after the broker accepted the message, so a failed publish leaves no
    trace. A conflicting row (the launch service already wrote it) is ignored.
    """
    args, kwargs = _arguments(body)
    args, kwargs, secrets = secret_arguments.mask(catalogue.get_entry(task_name), args, kwargs)
    periodic_task_name = headers.get("periodic_task_name") or ""
    run = Run(
        task_result_id=task_id,
        task_name=task_name,
        queue=queue or "",
        priority=Priority.from_broker(headers.get(PRIORITY_HEADER)),
        args=args,
        kwargs=kwargs,
        secrets=secret_arguments.seal(secrets),
        eta=_parse_time(headers.get("eta")),
        expires=_parse_time(headers.get("expires")),
        source=RunSource.SCHEDULE if periodic_task_name else RunSource.CODE,
        periodic_task_name=periodic_task_name,
        **lineage(task_id, parent_id=headers.get("parent_id"), root_id=headers.get("root_id")),
    )
    collector = _collector.get()
    if collector is not None:
        collector.append(run)
        return
    try:
        runs_write([run])
    except DatabaseError:
        # The task is already on its way; failing the publisher would not unsend it.
        logger.exception("Could not record run %s of %s", task_id, task_name)


def lineage(task_id: str, *, parent_id, root_id) -> dict:
    """The ``parent_task_id`` and ``root_task_id`` of a run from Celery's message headers.

    Celery sets ``root_id`` to the run's own id for a run no task sent: that is no lineage.
    """
    parent = parent_id if isinstance(parent_id, str) and parent_id and parent_id != task_id else None
    root = root_id if isinstance(root_id, str) and root_id and root_id != task_id else None
    if parent is None and root is None:
        return {}
    return {"parent_task_id": (parent or root)[:255], "root_task_id": (root or parent)[:255]}


def _arguments(body) -> tuple[list, dict]:
    # Task message protocol 2: body is (args, kwargs, embed).
    if isinstance(body, (list, tuple)) and len(body) >= 2:
        args, kwargs = body[0], body[1]
        return (list(args) if isinstance(args, (list, tuple)) else []), (kwargs if isinstance(kwargs, dict) else {})
    return [], {}


def _parse_time(value):
    """An ISO 8601 time from a message header, or None."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None
    return parsed if timezone.is_aware(parsed) else timezone.make_aware(parsed, UTC)
