"""The monitor's record of each run: state, times, worker, outcome and attempts, from task events.

``RunChanges`` collects task events per task id in memory (no database access
per event). At every flush the runner calls ``runs_changes_write``, which loads
the runs of the collected ids (one indexed query per 500 ids, rows locked),
applies the events in order and writes the changed columns back with one
``executemany`` UPDATE per 500 rows. A task a worker received whose run has no
row (it was sent by a client other than taskcenter, without the publish
signals) gets one from its
``task-received`` event, with ``INSERT ... ON CONFLICT DO NOTHING``, once
``CREATE_GRACE`` seconds have passed, so a publisher that records its own run
a little after sending keeps its richer row. Once a minute the runner also
looks for waiting runs whose message has left the broker (``runs_lost_reconcile``).

Rules: a SUCCESS or FAILURE event always records its outcome (the latest one
wins, also over a REVOKED that raced it); REVOKED replaces only a state that is
not SUCCESS or FAILURE; RECEIVED, STARTED and RETRY never replace a final state.

Each ``task-started`` opens an attempt (worker, pid of the worker's main
process, start time); the attempt ends with the task's next
event: succeeded, failed, retried, revoked, requeued or rejected (the worker
lost it or refused it), or ``worker lost`` / ``broker lost`` when the monitor gave its
message back to the queue (``task-restored``, see ``taskcenter.recovery``). A failed or
retried attempt keeps its exception (``error``), and a retried one the time its retry is
due (``next_at``, the ``eta`` of the retry's ``task-received``, which may come before the
``task-retried``). A new ``task-started`` while the previous attempt is still open means
that attempt was lost without a word (its worker was killed).
"""

import ast
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from taskcenter.models import OUTCOME_LENGTH, OUTCOME_STATES, PENDING, READY_STATES, REVOKED, Run, RunSource
from taskcenter.monitor.aggregate import _eta_timestamp, _number
from taskcenter.services.recording import lineage

logger = logging.getLogger(__name__)

#: Seconds an id's events wait for its Run row before the monitor writes one (or drops them).
CREATE_GRACE = 5.0
#: Task ids per query (SQLite limits query parameters).
WRITE_BATCH_SIZE = 500
#: Ids kept in memory at most while the database does not answer; the oldest are dropped.
MAX_PENDING_IDS = 100_000
#: Longest argument repr that is parsed back into JSON values.
MAX_REPR_LENGTH = 10_000
#: Attempts kept per run (the last ones).
MAX_ATTEMPTS = 50
#: Event type -> state it records.
EVENT_STATES = {
    "task-received": "RECEIVED",
    "task-started": "STARTED",
    "task-retried": "RETRY",
    "task-succeeded": "SUCCESS",
    "task-failed": "FAILURE",
    "task-revoked": "REVOKED",
}
#: Event type -> how it ends the open attempt.
ATTEMPT_ENDS = {
    "task-succeeded": "succeeded",
    "task-failed": "failed",
    "task-retried": "retried",
    "task-revoked": "revoked",
}
#: A waiting run is searched for in the broker once it is this old, and for at most a day.
LOST_MIN_AGE, LOST_MAX_AGE = timedelta(seconds=30), timedelta(days=1)
#: Waiting runs checked per reconciliation, newest first.
LOST_BATCH = 1000
LOST_REASON = gettext_lazy("its message is no longer in the broker (purged?)")
RUN_FIELDS = ["recorded_state", "recorded_started_at", "recorded_finished_at", "worker", "outcome", "attempts"]


@dataclass
class RunEvent:
    kind: str
    timestamp: float
    hostname: str = ""
    pid: int | None = None
    text: str = ""  # result or exception repr
    requeue: bool = False
    eta: float | None = None  # task-received of a delayed message (a retry's countdown): when it is due


@dataclass
class RunChange:
    """What the events of one task id said since the last write."""

    first_seen: float
    events: list[RunEvent] = field(default_factory=list)
    received: dict | None = None  # the task-received event, to create a missing row
    queue: str = ""  # from task-sent, when seen


class RunChanges:
    """Task events per task id, waiting for the next flush."""

    def __init__(self, *, clock=time.time, max_ids: int = MAX_PENDING_IDS):
        self.clock = clock
        self.max_ids = max_ids
        self.changes: OrderedDict[str, RunChange] = OrderedDict()

    def handle(self, event: dict) -> None:
        kind = event.get("type") or ""
        task_id = event.get("uuid")
        if not kind.startswith("task-") or not isinstance(task_id, str) or not task_id:
            return
        change = self.changes.get(task_id)
        if change is None:
            change = self.changes[task_id] = RunChange(first_seen=self.clock())
            if len(self.changes) > self.max_ids:
                dropped, _ = self.changes.popitem(last=False)
                logger.warning("Too many runs waiting to be written; dropped the events of %s", dropped)
        if kind == "task-sent":
            change.queue = str(event.get("queue") or event.get("routing_key") or "")
            return
        if kind == "task-received" and change.received is None:
            change.received = event
        if kind not in EVENT_STATES and kind not in ("task-rejected", "task-restored"):
            return
        text = event.get("result") if kind == "task-succeeded" else event.get("exception") or event.get("reason")
        change.events.append(
            RunEvent(
                kind=kind,
                timestamp=_number(event.get("timestamp")) or _number(event.get("local_received")) or self.clock(),
                hostname=str(event.get("hostname") or ""),
                pid=event.get("pid") if isinstance(event.get("pid"), int) else None,
                text="" if text is None else str(text)[:OUTCOME_LENGTH],
                requeue=bool(event.get("requeue")),
                eta=_eta_timestamp(event.get("eta")) if kind == "task-received" else None,
            )
        )

    def take(self) -> dict[str, RunChange]:
        """Everything collected; give back what could not be written with ``keep``."""
        taken, self.changes = self.changes, OrderedDict()
        return taken

    def keep(self, changes: dict[str, RunChange]) -> None:
        """Put back changes not written (the database failed, or their row may still come)."""
        for task_id, change in changes.items():
            newer = self.changes.pop(task_id, None)
            if newer is not None:
                change.events.extend(newer.events)
                change.received = change.received or newer.received
                change.queue = change.queue or newer.queue
            self.changes[task_id] = change
        while len(self.changes) > self.max_ids:
            self.changes.popitem(last=False)
        self.changes = OrderedDict(sorted(self.changes.items(), key=lambda item: item[1].first_seen))

    def forget(self) -> None:
        self.changes.clear()

    def __len__(self) -> int:
        return len(self.changes)


@dataclass
class RunRecord:
    """The columns of a Run the monitor writes (loading whole rows would decode their arguments too)."""

    pk: int
    recorded_state: str
    recorded_started_at: datetime | None
    recorded_finished_at: datetime | None
    worker: str
    outcome: str
    attempts: list


def runs_changes_write(changes: dict[str, RunChange], *, now: float | None = None) -> dict[str, RunChange]:
    """Write ``changes`` to their runs (creating missing ones); return those to try again later.

    Per ``WRITE_BATCH_SIZE`` ids, in one transaction: one SELECT ... FOR UPDATE of
    the changed columns, one INSERT of missing rows, one executemany UPDATE.
    Raises DatabaseError; nothing of a failed batch is written then.
    """
    now = time.time() if now is None else now
    later: dict[str, RunChange] = {}
    ids = []
    for task_id, change in changes.items():
        if change.events or change.received is not None:
            ids.append(task_id)
        elif now - change.first_seen < CREATE_GRACE:  # only task-sent so far: keep its queue for a while
            later[task_id] = change
    for start in range(0, len(ids), WRITE_BATCH_SIZE):
        batch = ids[start : start + WRITE_BATCH_SIZE]
        with transaction.atomic():
            rows = (
                Run.objects.select_for_update()
                .filter(task_result_id__in=batch)
                .values_list("task_result_id", "pk", *RUN_FIELDS)
            )
            records = {row[0]: RunRecord(*row[1:]) for row in rows}
            to_create = []
            for task_id in batch:
                if task_id in records:
                    continue
                change = changes[task_id]
                if now - change.first_seen < CREATE_GRACE:
                    later[task_id] = change
                elif change.received is not None:
                    run = run_from_received(task_id, change)
                    for event in change.events:
                        run_apply_event(run, event)
                    to_create.append(run)
                else:
                    logger.debug("No run for %s and no task-received event; its events are dropped", task_id)
            if to_create:
                # A row written meanwhile by its publisher wins (a few seconds after the send: rare).
                Run.objects.bulk_create(to_create, ignore_conflicts=True)
            for task_id, record in records.items():
                for event in changes[task_id].events:
                    run_apply_event(record, event)
            _records_update(list(records.values()))
    return later


def _records_update(records: list[RunRecord]) -> None:
    """One UPDATE per record, sent with executemany (Django's bulk_update builds a CASE per column: slower)."""
    if not records:
        return
    fields = [Run._meta.get_field(name) for name in RUN_FIELDS]
    quote = connection.ops.quote_name
    assignments = ", ".join(f"{quote(field.column)} = %s" for field in fields)
    sql = f"UPDATE {quote(Run._meta.db_table)} SET {assignments} WHERE {quote(Run._meta.pk.column)} = %s"
    params = [
        [field.get_db_prep_save(getattr(record, field.attname), connection) for field in fields] + [record.pk]
        for record in records
    ]
    with connection.cursor() as cursor:
        cursor.executemany(sql, params)


def run_apply_event(run: Run | RunRecord, event: RunEvent) -> None:
    """Apply one event to the run's own record (see the module's rules)."""
    at = datetime.fromtimestamp(event.timestamp, UTC)
    state = EVENT_STATES.get(event.kind)
    current = run.recorded_state
    if state in OUTCOME_STATES:
        run.recorded_state = state
    elif state == "REVOKED":
        if current not in OUTCOME_STATES:
            run.recorded_state = state
    elif state is not None and current not in READY_STATES:
        run.recorded_state = state
    attempts = list(run.attempts or [])
    if event.kind == "task-started":
        if attempts and not attempts[-1].get("ended"):
            attempts[-1]["ended"] = "lost"
        attempts.append({"worker": event.hostname, "pid": event.pid, "started": at.isoformat(), "ended": None})
        run.recorded_started_at = at
        run.worker = event.hostname[:255]
    elif attempts and not attempts[-1].get("ended"):
        if event.kind in ATTEMPT_ENDS:
            attempts[-1].update(ended=ATTEMPT_ENDS[event.kind], at=at.isoformat())
            if event.kind in ("task-failed", "task-retried") and event.text:
                attempts[-1]["error"] = event.text
        elif event.kind == "task-rejected":
            attempts[-1].update(ended="requeued" if event.requeue else "rejected", at=at.isoformat())
        elif event.kind == "task-restored":
            attempts[-1].update(ended=event.text or "worker lost", at=at.isoformat())
    if event.kind == "task-received" and event.eta is not None and attempts:
        # A delayed message of a run that already ran once: its retry. The worker may report
        # receiving it before the retried attempt's own task-retried event, so the open attempt counts too.
        attempts[-1]["next_at"] = datetime.fromtimestamp(event.eta, UTC).isoformat()
    run.attempts = attempts[-MAX_ATTEMPTS:]
    if state in READY_STATES and run.recorded_state == state:
        run.recorded_finished_at = at
        if event.text:
            run.outcome = event.text
    elif state == "RETRY" and event.text:
        run.outcome = event.text


def run_from_received(task_id: str, change: RunChange) -> Run:
    """A Run row for a task sent by another client, from the worker's task-received event."""
    event = change.received or {}
    timestamp = _number(event.get("timestamp")) or change.first_seen
    eta, expires = _eta_timestamp(event.get("eta")), _eta_timestamp(event.get("expires"))
    return Run(
        task_result_id=task_id,
        task_name=str(event.get("name") or "")[:255],
        queue=change.queue[:200],
        args=_literal(event.get("args"), list),
        kwargs=_literal(event.get("kwargs"), dict),
        eta=datetime.fromtimestamp(eta, UTC) if eta is not None else None,
        expires=datetime.fromtimestamp(expires, UTC) if expires is not None else None,
        source=RunSource.EXTERNAL,
        created_at=datetime.fromtimestamp(timestamp, UTC),
        **lineage(task_id, parent_id=event.get("parent_id"), root_id=event.get("root_id")),
    )


def _literal(text, kind):
    """The arguments from their repr in an event, as JSON values; the repr itself when it cannot be read back."""
    if isinstance(text, kind):
        return text
    if not isinstance(text, str) or not text:
        return kind()
    if len(text) <= MAX_REPR_LENGTH:
        try:
            value = ast.literal_eval(text)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            value = None
        if isinstance(value, tuple) and kind is list:
            value = list(value)
        if isinstance(value, kind) and _is_json(value):
            return value
    return kind() if kind is dict else [f"(not readable: {text[:OUTCOME_LENGTH]})"]


def _is_json(value, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, bool | int | float | str):
        return True
    if isinstance(value, list | tuple):
        return all(_is_json(item, depth + 1) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v, depth + 1) for k, v in value.items())
    return False


def runs_lost_reconcile(suspects: set[str], *, since: datetime | None = None) -> tuple[set[str], int]:
    """Send again the waiting runs whose message has left the broker without running.

    A run is lost when it is PENDING with no result, between ``LOST_MIN_AGE``
    and ``LOST_MAX_AGE`` old, on a configured queue, and its message is neither in
    its queue, nor in kombu's unacked hash, nor in the scheduled set, in two
    reconciliations in a row (``suspects`` are the ids missing last time). kombu's
    Redis transport takes a message off its list and then records it unacknowledged:
    a worker killed between the two loses it. Such runs are sent again with the same
    task id (``run_resend``); those that cannot be (a workflow step, a task no longer
    catalogued) are recorded as revoked. Runs purged through taskcenter are already
    cancelled and not looked at. Bounded: ``LOST_BATCH`` runs,
    and nothing is decided when the broker holds more than the search limit of
    ``queue_message_ids``. Only runs created after ``since`` count: the monitor
    passes the time it started, so every run it judges had its events seen (a
    task that stores no result and ran while no monitor watched is not taken
    for a lost one). Returns the new suspects and the number of lost runs found.
    Raises DatabaseError and ``BrokerDown``.
    """
    from taskcenter.broker import BROKER_ERRORS, broker_down_message
    from taskcenter.services.launch import run_resend
    from taskcenter.services.queues import BrokerDown, queue_message_ids, scheduled_waiting_ids

    now = timezone.now()
    queues = list(settings.TASKCENTER_QUEUES)
    candidates = set(
        Run.objects.filter(
            recorded_state=PENDING,
            cancelled_at__isnull=True,
            task_result__status__isnull=True,
            queue__in=queues,
            created_at__lt=now - LOST_MIN_AGE,
            created_at__gte=max(now - LOST_MAX_AGE, since or now - LOST_MAX_AGE),
        )
        .order_by("-id")
        .values_list("task_result_id", flat=True)[:LOST_BATCH]
    )
    if not candidates:
        return set(), 0
    # The scheduled set first: a message it publishes meanwhile is then found on its queue.
    waiting = scheduled_waiting_ids(candidates)
    present = queue_message_ids(queues)
    if present is None:
        return set(), 0
    missing = candidates - present - waiting
    confirmed = list(missing & suspects)
    not_sent: list[str] = []
    for run in Run.objects.filter(task_result_id__in=confirmed, recorded_state=PENDING, cancelled_at__isnull=True):
        try:
            if run_resend(run, reason=gettext("its message was no longer in the broker")):
                continue
        except BROKER_ERRORS as exc:
            raise BrokerDown(broker_down_message(gettext_noop("lost runs were not sent again"))) from exc
        not_sent.append(run.task_id)
    marked = 0
    for start in range(0, len(not_sent), WRITE_BATCH_SIZE):
        marked += Run.objects.filter(
            task_result_id__in=not_sent[start : start + WRITE_BATCH_SIZE],
            recorded_state=PENDING,
            cancelled_at__isnull=True,
        ).update(recorded_state=REVOKED, recorded_finished_at=now, cancelled_at=now, cancel_reason=str(LOST_REASON))
    if marked:
        logger.warning("%d waiting run(s) lost their message in the broker (purged?); recorded as revoked", marked)
    return missing - set(confirmed), len(confirmed)
