"""Failure groups from task-failed events, written in the monitor's batch flush.

The monitor keeps each task-failed event's exception and traceback until the
next flush; ``failures_write`` then, per ``WRITE_BATCH_SIZE`` failures, reads the
failed runs' task names (one query), fingerprints each failure
(``taskcenter.failures``), upserts the groups (one SELECT, one INSERT of the new
ones, one UPDATE per group seen) and sets the runs' fingerprints (one UPDATE per
group). Workers do nothing more for a failure, and nothing at all for a success.

A run is counted once: only runs without a fingerprint yet join a group.
"""

import logging
import time
from collections import OrderedDict, defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime

from django.db import transaction
from django.db.models import Case, F, Value, When
from django.db.models.functions import Greatest

from taskcenter.failures import Fingerprint, failure_fingerprint
from taskcenter.models import FailureGroup, Run
from taskcenter.monitor.aggregate import _number

logger = logging.getLogger(__name__)

#: Failures per batch (SQLite limits query parameters).
WRITE_BATCH_SIZE = 500
#: Seconds a failure waits for its Run row (written by the run recorder in the same flush, or a bit later).
ROW_GRACE = 30.0
#: Failures kept in memory at most while the database does not answer; the oldest are dropped.
MAX_PENDING = 50_000
#: Characters of a sample traceback and exception kept.
TRACEBACK_LENGTH, EXCEPTION_LENGTH = 20_000, 2_000


@dataclass
class Failure:
    task_id: str
    exception: str
    traceback: str
    timestamp: float
    first_seen: float


class FailureCollector:
    """task-failed events waiting for the next flush."""

    def __init__(self, *, clock=time.time, max_pending: int = MAX_PENDING):
        self.clock = clock
        self.max_pending = max_pending
        self.pending: OrderedDict[str, Failure] = OrderedDict()

    def handle(self, event: dict) -> None:
        task_id = event.get("uuid")
        if event.get("type") != "task-failed" or not isinstance(task_id, str) or not task_id:
            return
        now = self.clock()
        self.pending[task_id] = Failure(
            task_id=task_id,
            exception=str(event.get("exception") or "")[:EXCEPTION_LENGTH],
            traceback=str(event.get("traceback") or "")[-TRACEBACK_LENGTH:],
            timestamp=_number(event.get("timestamp")) or now,
            first_seen=now,
        )
        if len(self.pending) > self.max_pending:
            dropped, _ = self.pending.popitem(last=False)
            logger.warning("Too many failures waiting to be grouped; dropped %s", dropped)

    def take(self) -> dict[str, Failure]:
        taken, self.pending = self.pending, OrderedDict()
        return taken

    def keep(self, failures: dict[str, Failure]) -> None:
        """Put back failures not written; newer events of the same ids win."""
        merged = OrderedDict(failures)
        merged.update(self.pending)
        while len(merged) > self.max_pending:
            merged.popitem(last=False)
        self.pending = merged

    def forget(self) -> None:
        self.pending.clear()

    def __len__(self) -> int:
        return len(self.pending)


def failures_write(failures: dict[str, Failure], *, now: float | None = None) -> dict[str, Failure]:
    """Group ``failures`` and mark their runs; return those whose run row is not there yet.

    Raises DatabaseError; nothing of a failed batch is written then.
    """
    now = time.time() if now is None else now
    later: dict[str, Failure] = {}
    ids = list(failures)
    for start in range(0, len(ids), WRITE_BATCH_SIZE):
        batch = ids[start : start + WRITE_BATCH_SIZE]
        with transaction.atomic():
            rows = {
                task_id: (task_name, fingerprint)
                for task_id, task_name, fingerprint in Run.objects.filter(task_result_id__in=batch).values_list(
                    "task_result_id", "task_name", "failure_fingerprint"
                )
            }
            seen: dict[str, list[tuple[Failure, Fingerprint, str]]] = defaultdict(list)
            for task_id in batch:
                failure = failures[task_id]
                if task_id not in rows:
                    if now - failure.first_seen < ROW_GRACE:
                        later[task_id] = failure
                    else:
                        logger.debug("No run for failed task %s; not grouped", task_id)
                    continue
                task_name, existing = rows[task_id]
                if existing:
                    continue  # already in a group (an event seen twice)
                fingerprint = failure_fingerprint(
                    task_name=task_name, exception=failure.exception, traceback=failure.traceback
                )
                seen[fingerprint.value].append((failure, fingerprint, task_name))
            if seen:
                _groups_upsert(seen)
    return later


def _groups_upsert(seen: dict[str, list[tuple[Failure, Fingerprint, str]]]) -> None:
    existing = set(FailureGroup.objects.filter(fingerprint__in=list(seen)).values_list("fingerprint", flat=True))
    new = []
    for value, items in seen.items():
        failures = sorted((item[0] for item in items), key=lambda failure: failure.timestamp)
        first = datetime.fromtimestamp(failures[0].timestamp, UTC)
        last = datetime.fromtimestamp(failures[-1].timestamp, UTC)
        sample = failures[-1]
        fingerprint, task_name = items[0][1], items[0][2]
        if value not in existing:
            new.append(
                FailureGroup(
                    fingerprint=value,
                    task_name=task_name[:255],
                    exception_type=fingerprint.exception_type,
                    location=fingerprint.location,
                    count=len(failures),
                    first_seen=first,
                    last_seen=last,
                    sample_task_id=sample.task_id[:255],
                    sample_exception=sample.exception,
                    sample_traceback=sample.traceback,
                )
            )
        else:
            FailureGroup.objects.filter(fingerprint=value).update(
                count=F("count") + len(failures),
                first_seen=Case(When(first_seen__gt=first, then=Value(first)), default=F("first_seen")),
                last_seen=Greatest(F("last_seen"), Value(last)),
                sample_task_id=sample.task_id[:255],
                sample_exception=sample.exception,
                sample_traceback=sample.traceback,
                # A resolved error that comes back needs attention again; an ignored one stays ignored.
                status=Case(
                    When(status=FailureGroup.Status.RESOLVED, then=Value(FailureGroup.Status.OPEN)),
                    default=F("status"),
                ),
            )
        Run.objects.filter(task_result_id__in=[failure.task_id for failure in failures]).update(
            failure_fingerprint=value
        )
    if new:
        FailureGroup.objects.bulk_create(new)  # one monitor writes at a time (it holds the lock)
