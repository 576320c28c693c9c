"""Retention: delete records older than their configured age, in bounded batches.

Each kind of record is registered once (``retention_register``) with its model,
the date field its age is read from, the setting that holds its retention and a
default. ``retention_cleanup`` walks the kinds in registration order and deletes
expired rows by primary-key batches of at most ``TASKCENTER_RETENTION_BATCH_SIZE``
rows, one short transaction per batch, so no statement holds a lock for long.

Results are deleted before runs, through the copy the result backend makes
(``taskcenter.backend.runs_record_results``), so a run never turns PENDING when
its result goes. A run is deleted only once it is finished (its recorded state
or its result says so), together with its result; runs that wait or run are
never deleted. Attempts live on the run row and go with it.

Other modules register their own records, e.g.::

    retention_register(RetentionKind(
        name="deliveries", model="myapp.Delivery", date_field="created_at",
        setting="MYAPP_DELIVERY_RETENTION_DAYS", default=30,
    ))
"""

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.apps import apps
from django.conf import settings
from django.db import models, transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone
from django_celery_results.models import TaskResult

from taskcenter.models import (
    OUTCOME_STATES,
    PENDING,
    READY_STATES,
    REVOKED,
    AuditEntry,
    Batch,
    DedupLock,
    Run,
    Workflow,
)

logger = logging.getLogger(__name__)

#: Rows deleted per statement and per transaction when TASKCENTER_RETENTION_BATCH_SIZE is not set.
DEFAULT_BATCH_SIZE = 2000
DAY = 24 * 3600


@dataclass(frozen=True)
class RetentionKind:
    """One kind of record with a retention.

    ``setting`` holds the retention in ``unit`` seconds (days by default); 0, None
    or a missing setting with ``default`` 0 keeps the records forever.
    ``expired`` narrows the rows older than the cutoff to those that may go;
    ``before_delete`` runs in the batch's transaction with the batch's primary keys.
    """

    name: str
    model: type[models.Model] | str
    date_field: str
    setting: str
    default: float = 0
    unit: int = DAY
    expired: Callable[[models.QuerySet], models.QuerySet] | None = None
    before_delete: Callable[[list], None] | None = None

    def get_model(self) -> type[models.Model]:
        return apps.get_model(self.model) if isinstance(self.model, str) else self.model

    def retention(self) -> timedelta | None:
        """How long records are kept, read from settings now; None: forever."""
        value = getattr(settings, self.setting, self.default)
        if isinstance(value, timedelta):
            value = value.total_seconds() / self.unit
        if not value or float(value) <= 0:
            return None
        return timedelta(seconds=float(value) * self.unit)

    def queryset(self, now: datetime) -> models.QuerySet | None:
        """The expired rows, or None when the kind is kept forever."""
        retention = self.retention()
        if retention is None:
            return None
        queryset = self.get_model()._default_manager.filter(**{f"{self.date_field}__lt": now - retention})
        return self.expired(queryset) if self.expired else queryset


_kinds: dict[str, RetentionKind] = {}


def retention_register(kind: RetentionKind) -> None:
    """Register (or replace) the retention of one kind of record; cleaned after those registered before."""
    _kinds[kind.name] = kind


def retention_kinds() -> list[RetentionKind]:
    """Every registered kind, in cleanup order."""
    return list(_kinds.values())


@dataclass
class CleanupReport:
    """What one cleanup removed (or would remove), per kind."""

    counts: dict[str, int]
    dry_run: bool
    seconds: float
    longest_batch: float

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        parts = ", ".join(f"{name} {count}" for name, count in self.counts.items()) or "nothing configured"
        return f"Retention cleanup {verb} {self.total} row(s): {parts}"


def batch_size() -> int:
    return max(1, int(getattr(settings, "TASKCENTER_RETENTION_BATCH_SIZE", DEFAULT_BATCH_SIZE)))


def kind_delete_expired(
    kind: RetentionKind, *, now: datetime | None = None, dry_run: bool = False
) -> tuple[int, float]:
    """Delete the expired rows of ``kind`` batch by batch; return (rows, longest batch in seconds).

    Batches follow the primary key upwards (keyset), so rows that are old but must
    be kept (an active run) are read past once, not again in every batch.
    """
    queryset = kind.queryset(now or timezone.now())
    if queryset is None:
        return 0, 0.0
    if dry_run:
        return queryset.count(), 0.0
    model = kind.get_model()
    size = batch_size()
    deleted = 0
    longest = 0.0
    last = None
    while True:
        started = time.monotonic()
        with transaction.atomic():
            page = queryset.order_by("pk")
            if last is not None:
                page = page.filter(pk__gt=last)
            pks = list(page.values_list("pk", flat=True)[:size])
            if not pks:
                break
            if kind.before_delete:
                kind.before_delete(pks)
            _, per_model = model._default_manager.filter(pk__in=pks).delete()
            deleted += per_model.get(model._meta.label, 0)
        longest = max(longest, time.monotonic() - started)
        last = pks[-1]
        if len(pks) < size:
            break
    return deleted, longest


def retention_cleanup(*, dry_run: bool = False, now: datetime | None = None, kinds: list[str] | None = None):
    """Delete every registered kind's expired rows; log and audit the counts. Return a ``CleanupReport``."""
    from taskcenter.services.audit import Action, audit_record

    now = now or timezone.now()
    started = time.monotonic()
    counts: dict[str, int] = {}
    longest = 0.0
    for kind in retention_kinds():
        if kinds is not None and kind.name not in kinds:
            continue
        if kind.retention() is None:
            continue
        counts[kind.name], batch_seconds = kind_delete_expired(kind, now=now, dry_run=dry_run)
        longest = max(longest, batch_seconds)
    report = CleanupReport(counts=counts, dry_run=dry_run, seconds=time.monotonic() - started, longest_batch=longest)
    logger.info("%s in %.1f s (longest batch %.3f s)", report.summary(), report.seconds, report.longest_batch)
    if not dry_run:
        audit_record(
            actor=None,
            action=Action.RETENTION_CLEANUP,
            target="retention",
            message=report.summary(),
            detail={"deleted": counts, "seconds": round(report.seconds, 3)},
        )
    return report


# --- the built-in kinds -------------------------------------------------------------------


def _results_before_delete(pks: list) -> None:
    """Copy what the results tell into their runs before they go (the result backend's own copy)."""
    from taskcenter.backend import runs_record_results

    runs_record_results(TaskResult.objects.filter(pk__in=pks))


def results_delete_expired(*, now: datetime | None = None) -> int:
    """Delete results older than ``CELERY_RESULT_EXPIRES`` in bounded batches, keeping their runs true."""
    return kind_delete_expired(_kinds["results"], now=now)[0]


def finished_q() -> Q:
    """Runs whose ``Run.state`` is final, as a filter: the property's rules, in SQL."""
    # Subqueries, not a join: the same filter must hold inside another subquery (dedup locks),
    # where Django would turn the join into an INNER JOIN.
    result = TaskResult.objects.filter(task_id=OuterRef("task_result_id"))
    return (
        Q(recorded_state__in=OUTCOME_STATES)
        | Exists(result.filter(status__in=READY_STATES))
        | (~Exists(result) & (Q(recorded_state=REVOKED) | Q(recorded_state=PENDING, cancelled_at__isnull=False)))
    )


def _finished_runs(queryset: models.QuerySet) -> models.QuerySet:
    """Runs that will not change any more; runs that wait or run are never deleted."""
    return queryset.filter(finished_q())


def _runs_before_delete(pks: list) -> None:
    """Delete the runs' results with them, so that no result outlives its run to be read as a bare result."""
    task_ids = Run.objects.filter(pk__in=pks).values_list("task_result_id", flat=True)
    TaskResult.objects.filter(task_id__in=list(task_ids)).delete()


def _unused(queryset: models.QuerySet) -> models.QuerySet:
    """Batches and workflows none of whose runs are left (so no run loses its link)."""
    return queryset.exclude(Exists(Run.objects.filter(**{queryset.model._meta.model_name: OuterRef("pk")})))


def _released_locks(queryset: models.QuerySet) -> models.QuerySet:
    """Locks whose run is gone or finished: a lock held by a waiting or running run stays."""
    active = Run.objects.filter(task_result_id=OuterRef("task_id")).exclude(finished_q())
    return queryset.exclude(Exists(active))


def _checkpoints_of_finished_runs(queryset: models.QuerySet) -> models.QuerySet:
    from taskcenter.services.recovery import checkpoints_of_finished_runs

    return checkpoints_of_finished_runs(queryset)


def _register_builtin_kinds() -> None:
    retention_register(
        RetentionKind(
            name="results",
            model=TaskResult,
            date_field="date_done",
            setting="CELERY_RESULT_EXPIRES",
            unit=1,
            before_delete=_results_before_delete,
        )
    )
    retention_register(
        RetentionKind(
            name="runs",
            model=Run,
            date_field="created_at",
            setting="TASKCENTER_RETENTION_RUNS_DAYS",
            default=90,
            expired=_finished_runs,
            before_delete=_runs_before_delete,
        )
    )
    retention_register(
        RetentionKind(
            name="batches",
            model=Batch,
            date_field="created_at",
            setting="TASKCENTER_RETENTION_BATCHES_DAYS",
            default=90,
            expired=_unused,
        )
    )
    retention_register(
        RetentionKind(
            name="workflows",
            model=Workflow,
            date_field="created_at",
            setting="TASKCENTER_RETENTION_WORKFLOWS_DAYS",
            default=90,
            expired=_unused,
        )
    )
    retention_register(
        RetentionKind(
            name="dedup_locks",
            model=DedupLock,
            date_field="updated_at",
            setting="TASKCENTER_RETENTION_DEDUP_LOCKS_DAYS",
            default=7,
            expired=_released_locks,
        )
    )
    retention_register(
        RetentionKind(
            name="audit_entries",
            model=AuditEntry,
            date_field="at",
            setting="TASKCENTER_RETENTION_AUDIT_DAYS",
            default=365,
        )
    )
    retention_register(
        RetentionKind(
            name="task_minutes",
            model="taskcenter.TaskMinute",
            date_field="minute",
            setting="TASKCENTER_MONITOR_RETENTION_DAYS",
            default=30,
        )
    )
    retention_register(
        RetentionKind(
            name="queue_samples",
            model="taskcenter.QueueSample",
            date_field="at",
            setting="TASKCENTER_MONITOR_SAMPLE_RETENTION_DAYS",
            default=7,
        )
    )
    # Records of issue 10's other parts, registered here once so one cleanup covers them all.
    retention_register(
        RetentionKind(
            name="dead_letters",
            model="taskcenter.DeadLetter",
            date_field="resolved_at",
            setting="TASKCENTER_RETENTION_DEAD_LETTERS_DAYS",
            default=90,
            expired=lambda rows: rows.exclude(resolution=""),  # unresolved letters wait for an operator
        )
    )
    retention_register(
        RetentionKind(
            name="failure_groups",
            model="taskcenter.FailureGroup",
            date_field="last_seen",
            setting="TASKCENTER_RETENTION_FAILURE_GROUPS_DAYS",
            default=90,
            expired=lambda rows: rows.exclude(status="open"),
        )
    )
    retention_register(
        RetentionKind(
            name="checkpoints",
            model="taskcenter.Checkpoint",
            date_field="created_at",
            setting="TASKCENTER_CHECKPOINT_RETENTION_DAYS",
            default=7,
            expired=_checkpoints_of_finished_runs,  # a run that waits or runs may still resume from them
        )
    )
    retention_register(
        RetentionKind(
            name="notification_deliveries",
            model="taskcenter.NotificationDelivery",
            date_field="created_at",
            setting="TASKCENTER_NOTIFY_LOG_DAYS",
            default=30,
            expired=lambda rows: rows.exclude(status="pending"),
        )
    )


_register_builtin_kinds()
