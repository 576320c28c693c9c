"""Queues: what waits in them and who consumes them; pause, resume and purge.

On Redis a queue is one list per priority step, named by kombu: the queue name
for step 0 and ``<queue>\\x06\\x16<step>`` for the others. Messages are pushed on
the left and consumed from the right, so the right end of a list holds its
oldest message. A paused queue is saved in ``QueueState`` and every worker is
told to stop consuming it; workers that start later read the saved state
(``services.workers.worker_apply_saved_state``).
"""

import json
import logging
import re
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from taskcenter.broker import (
    BROKER_ERRORS,
    Backlog,
    broker_channel,
    broker_down_message,
    message_headers,
    oldest_ages,
    priority_lists,
    queue_backlogs,
    queue_message_find,
    queue_message_put_back,
    queue_message_remove,
)
from taskcenter.models import OUTCOME_STATES, QueueState, Run
from taskcenter.priorities import REDIS_PRIORITY_STEPS, Priority
from taskcenter.selectors.broker import UnknownQueue, message_decode, message_digest, queue_require_configured
from taskcenter.services.audit import Action
from taskcenter.services.errors import Conflict
from taskcenter.services.workers import (
    ActionFailed,
    ActionRefused,
    ActionReport,
    BrokerDown,
    NoWorkerReplied,
    as_user,
    no_reply_message,
    run_audited,
    workers_broadcast,
    workers_inspect,
)

logger = logging.getLogger(__name__)

__all__ = ["UnknownQueue"]  # raised here, defined with the reads of the broker

#: Priority name of each broker priority step (0 is served first).
PRIORITY_NAMES = {priority.broker_priority: priority.value for priority in Priority}
#: Task ids per UPDATE when purged runs are marked cancelled (SQLite limits query parameters).
CANCEL_BATCH_SIZE = 500


@dataclass(frozen=True)
class PriorityDepth:
    priority: str
    count: int


@dataclass(frozen=True)
class QueueInfo:
    """One configured queue; broker figures are None when the broker cannot be reached."""

    name: str
    depth: int | None
    by_priority: list[PriorityDepth]
    oldest_age: float | None
    consumers: list[str]
    state: QueueState | None

    @property
    def paused(self) -> bool:
        return bool(self.state and self.state.paused)


@dataclass(frozen=True)
class QueuesOverview:
    """The queues page: every configured queue, and notices when something could not be read."""

    queues: list[QueueInfo]
    priorities: list[str]
    problems: list[str]
    #: Queues that hold messages (or have consumers) but are not configured, e.g. Celery's default ``celery``.
    others: list[QueueInfo] = ()


# --- The queues page -------------------------------------------------------------


def queues_overview() -> QueuesOverview:
    """Depth, oldest message, consumers and paused state of every configured queue."""
    names = list(settings.TASKCENTER_QUEUES)
    states = {state.name: state for state in QueueState.objects.select_related("changed_by").filter(name__in=names)}
    problems: list[str] = []
    backlogs: dict[str, Backlog] = {}
    consumers: dict[str, list[str]] = {}
    other_names: list[str] = []
    try:
        other_names = _other_queue_names(names)
        with _broker_down_raised(gettext_noop("the queues could not be read")):
            backlogs = queue_backlogs(names + other_names)
        queues_by_worker = workers_inspect("active_queues")["active_queues"]
    except BrokerDown as exc:
        problems.append(str(exc))
    else:
        consumers = _consumers_by_queue(queues_by_worker)
        if not queues_by_worker:
            problems.append(no_reply_message(None))
    other_names += sorted(set(consumers) - set(names) - set(other_names))
    ages = oldest_ages(backlogs)
    queues = [
        _queue_info(name, backlogs.get(name), ages.get(name), consumers.get(name, []), states.get(name))
        for name in names
    ]
    others = [
        _queue_info(name, backlogs.get(name), ages.get(name), consumers.get(name, []), None) for name in other_names
    ]
    return QueuesOverview(
        queues=queues,
        priorities=[PRIORITY_NAMES[step] for step in REDIS_PRIORITY_STEPS],
        problems=problems,
        others=[queue for queue in others if queue.depth or queue.consumers][:MAX_OTHER_QUEUES],
    )


#: Keys the search for unconfigured queues reads at most, and unconfigured queues shown at most.
MAX_KEYS_SCANNED, MAX_OTHER_QUEUES = 2_000, 50
#: Lists and bindings in the broker that are not task queues (Celery's remote control and events, ours).
_NOT_QUEUES = (".pidbox", "celeryev.", "taskcenter:", "_kombu.", "unacked")


def _other_queue_names(configured: list[str]) -> list[str]:
    """Names of queues in the broker that are not configured: declared (kombu bindings) or holding messages.

    Bounded: at most ``MAX_KEYS_SCANNED`` keys are looked at. A message sent by
    another client to a queue nobody consumes (Celery's default ``celery``)
    shows up here.
    """
    with _broker_channel(gettext_noop("the queues could not be read")) as channel:
        client = channel.client
        sep = channel.sep
        found: set[str] = set()
        scanned = 0
        for key in client.scan_iter(match=channel.keyprefix_queue % "*", count=500):
            scanned += 1
            for member in client.smembers(key) or ():
                parts = member.decode(errors="replace").split(sep)
                if len(parts) == 3:
                    found.add(parts[2])
            if scanned >= MAX_KEYS_SCANNED // 2:
                break
        scanned = 0
        for key in client.scan_iter(count=500, _type="list"):
            scanned += 1
            found.add(key.decode(errors="replace").split(sep)[0])
            if scanned >= MAX_KEYS_SCANNED // 2:
                break
    known = set(configured)
    return sorted(
        name for name in found if name and name not in known and not any(part in name for part in _NOT_QUEUES)
    )[: MAX_OTHER_QUEUES * 2]


def _queue_info(name, backlog: Backlog | None, age, consumers, state) -> QueueInfo:
    by_step = backlog.by_step if backlog else {}
    return QueueInfo(
        name=name,
        depth=backlog.depth if backlog else None,
        by_priority=[PriorityDepth(PRIORITY_NAMES[step], by_step.get(step, 0)) for step in REDIS_PRIORITY_STEPS],
        oldest_age=age,
        consumers=sorted(consumers),
        state=state,
    )


def _consumers_by_queue(queues_by_worker: dict[str, list[dict]]) -> dict[str, list[str]]:
    """Hostnames of the workers consuming each queue, from the workers' ``active_queues`` replies."""
    consumers = defaultdict(list)
    for hostname, queues in queues_by_worker.items():
        for queue in queues or []:
            consumers[queue["name"]].append(hostname)
    return dict(consumers)


# --- Pause and resume ------------------------------------------------------------


def queue_pause(*, name: str, actor) -> ActionReport:
    """Stop every worker consuming ``name``, now and whenever a worker starts."""
    return _queue_set_paused(name=name, paused=True, actor=actor)


def queue_resume(*, name: str, actor) -> ActionReport:
    """Let every worker consume ``name`` again."""
    return _queue_set_paused(name=name, paused=False, actor=actor)


def _queue_set_paused(*, name: str, paused: bool, actor) -> ActionReport:
    action, command = (Action.PAUSE, "cancel_consumer") if paused else (Action.RESUME, "taskcenter_resume_queue")

    def perform() -> ActionReport:
        _require_configured(name)
        QueueState.objects.update_or_create(name=name, defaults={"paused": paused, "changed_by": as_user(actor)})
        if paused:
            note = _("Queue %(name)s is saved as paused; workers apply that when they start.") % {"name": name}
        else:
            note = _("Queue %(name)s is saved as resumed; workers apply that when they start.") % {"name": name}
        try:
            workers = workers_broadcast(command, note=note, queue=name)
        except NoWorkerReplied:
            # As for rate limits: nothing is lost, every worker that starts applies the saved state.
            return ActionReport(_("No worker is online now. %(note)s") % {"note": note}, {"workers": []})
        done = (
            _("Queue %(name)s paused on %(count)d worker(s).")
            if paused
            else _("Queue %(name)s resumed on %(count)d worker(s).")
        )
        return ActionReport(done % {"name": name, "count": len(workers)}, {"workers": workers})

    return run_audited(actor=actor, action=action, target=name, perform=perform)


# --- Purge -----------------------------------------------------------------------


def queue_purge(*, name: str, confirmation: str, actor) -> ActionReport:
    """Delete every waiting message of ``name`` and mark their runs cancelled; ``confirmation`` must be the name."""

    def perform() -> ActionReport:
        _require_configured(name)
        if confirmation.strip() != name:
            raise ActionRefused(
                _("Type the queue name %(name)s to confirm the purge; nothing was purged.") % {"name": repr(name)}
            )
        messages = _remove_all_messages(name)
        task_ids = [task_id for task_id in (message_headers(raw).get("id") for raw in messages) if task_id]
        purged = _("purged from queue %(queue)s") % {"queue": name}
        cancelled = _mark_runs_purged(task_ids, reason=purged, actor=actor)
        return ActionReport(
            _("Purged %(count)d messages from queue %(name)s; %(cancelled)d run(s) marked cancelled.")
            % {"count": len(messages), "name": name, "cancelled": cancelled},
            {"purged": len(messages), "runs_cancelled": cancelled},
        )

    return run_audited(actor=actor, action=Action.PURGE, target=name, perform=perform)


def _remove_all_messages(name: str) -> list[bytes]:
    """Take every message off all priority lists of ``name`` in one MULTI/EXEC transaction."""
    with _broker_channel(gettext_noop("nothing was purged")) as channel:
        pipe = channel.client.pipeline(transaction=True)
        for key in priority_lists(channel, name).values():
            pipe.lrange(key, 0, -1)
            pipe.delete(key)
        replies = pipe.execute()
    return [raw for messages in replies[::2] for raw in messages]


def _mark_runs_purged(task_ids: list[str], *, reason: str, actor) -> int:
    """Mark the runs of removed messages cancelled (unless they already were); return how many."""
    now = timezone.now()
    changes = {
        "cancelled_at": now,
        "cancelled_by": as_user(actor),
        "cancel_reason": reason[:200],
        "recorded_state": "REVOKED",
        "recorded_finished_at": now,
    }
    cancelled = 0
    with transaction.atomic():
        for start in range(0, len(task_ids), CANCEL_BATCH_SIZE):
            batch = task_ids[start : start + CANCEL_BATCH_SIZE]
            cancelled += (
                Run.objects.filter(task_result_id__in=batch, cancelled_at__isnull=True)
                .exclude(recorded_state__in=OUTCOME_STATES)
                .update(**changes)
            )
    return cancelled


# --- One message: delete it, or move it to dead letters -----------------------------

#: Messages read at most to find one message again (it only moves towards the oldest end while it waits).
MESSAGE_FIND_LIMIT = 1_000
_MESSAGE_ID = re.compile(r"(\d{1,2})\.(\d{1,9})\.([0-9a-f]{32})\Z")


class MessageGone(Conflict):
    """The message is no longer in the queue (a worker took it, or someone removed it)."""


def queue_message_delete(*, name: str, message_id: str, actor) -> ActionReport:
    """Delete one waiting message of queue ``name`` (exactly that payload); mark its run cancelled.

    ``message_id`` is the queue browser's id of the message (``selectors.broker``).
    """

    def perform() -> ActionReport:
        raw, _step = _message_take(name, message_id)
        task_id, task_name, _args, _kwargs = _message_fields(raw)
        deleted = _("deleted from queue %(queue)s") % {"queue": name}
        cancelled = _mark_runs_purged([task_id], reason=deleted, actor=actor) if task_id else 0
        what = f"{task_name} [{task_id}]" if task_id else _unreadable(raw)
        return ActionReport(
            _("Deleted %(what)s from queue %(queue)s.") % {"what": what, "queue": name},
            {"message": "delete", "task_id": task_id, "size": len(raw), "runs_cancelled": cancelled},
        )

    return run_audited(actor=actor, action=Action.PURGE, target=name, perform=perform)


def queue_message_deadletter(*, name: str, message_id: str, actor) -> ActionReport:
    """Take one waiting message off queue ``name`` and keep it as a dead letter (replayable); mark its run cancelled."""
    from taskcenter.models import DeadLetter
    from taskcenter.services.deadletters import deadletter_record

    def perform() -> ActionReport:
        raw, step = _message_take(name, message_id)
        task_id, task_name, args, kwargs = _message_fields(raw)
        who = getattr(actor, "get_username", lambda: "")() or _("system")
        note = _("Moved to dead letters from queue %(queue)s by %(who)s.") % {"queue": name, "who": who}
        if not task_id:
            note += " " + _("The message was unreadable (%(size)s bytes): not a Celery protocol 2 task message.") % {
                "size": len(raw)
            }
        elif not _storable(args, kwargs):
            args, kwargs = [], {}
            note += " " + _("Its arguments are not valid JSON for the database (NaN or infinity) and were not kept.")
        letter = deadletter_record(
            task_id=task_id, task_name=task_name, reason=DeadLetter.Reason.REJECTED, queue=name,
            message=note, args=args, kwargs=kwargs,
        )  # fmt: skip
        if letter is None:  # not recorded: give the message back rather than lose it
            with _broker_down_raised(gettext_noop("the message could not be put back")):
                queue_message_put_back(name, step=step, raw=raw)
            raise ActionFailed(_("The dead letter could not be recorded; the message was put back in the queue."))
        cancelled = (
            _mark_runs_purged(
                [task_id], reason=_("moved to dead letters from queue %(queue)s") % {"queue": name}, actor=actor
            )
            if task_id
            else 0
        )
        what = f"{task_name} [{task_id}]" if task_id else _unreadable(raw)
        return ActionReport(
            _("Moved %(what)s from queue %(queue)s to dead letters.") % {"what": what, "queue": name},
            {"message": "deadletter", "task_id": task_id, "dead_letter": letter.pk, "runs_cancelled": cancelled},
        )

    return run_audited(actor=actor, action=Action.PURGE, target=name, perform=perform)


def _unreadable(raw: bytes) -> str:
    return _("an unreadable message (%(size)s bytes)") % {"size": len(raw)}


def _message_take(name: str, message_id: str) -> tuple[bytes, int]:
    """Find the message ``message_id`` of queue ``name`` and remove exactly its payload; return it and its step."""
    _require_configured(name)
    match = _MESSAGE_ID.match(message_id or "")
    step = int(match.group(1)) if match else None
    if step not in REDIS_PRIORITY_STEPS:
        raise ActionRefused(_("%(id)s is not a message id of the queue browser.") % {"id": repr(message_id)[:100]})
    position, digest = int(match.group(2)), match.group(3)
    with _broker_down_raised(gettext_noop("nothing was removed")):
        raw = queue_message_find(
            name, step=step, position=position, limit=MESSAGE_FIND_LIMIT,
            matches=lambda candidate: message_digest(candidate) == digest,
        )  # fmt: skip
        if raw is None or not queue_message_remove(name, step=step, raw=raw):
            gone = _("The message is no longer in queue %(queue)s (a worker may have taken it).")
            raise MessageGone(gone % {"queue": name})
    return raw, step


def _storable(args, kwargs) -> bool:
    """Whether the arguments can be kept in a JSON column (strict JSON: no NaN or infinity)."""
    try:
        json.dumps([args, kwargs], allow_nan=False)
    except (ValueError, TypeError, RecursionError):
        return False
    return True


def _message_fields(raw: bytes) -> tuple[str, str, list, dict]:
    """Task id, task name, args and kwargs of a removed message; empty for an unreadable one."""
    decoded = message_decode(raw)
    if decoded is None:
        return "", "", [], {}
    headers, args, kwargs = decoded
    return headers["id"], headers["task"], args, kwargs


# --- Is a message still in the broker? ------------------------------------------

#: Messages read at most to find one task's message; a longer backlog counts as "still there".
MESSAGE_SEARCH_LIMIT = 10_000


def queue_message_present(*, task_id: str, queue: str) -> bool:
    """Whether the broker still holds the message of ``task_id``: in the scheduled set, in a queue, or unacked.

    Looks in the scheduled set first (a message it publishes meanwhile is then on
    its queue), then reads the priority lists of ``queue`` (of every configured
    queue when it is not one of them) and kombu's hash of unacknowledged messages
    (those a worker holds: reserved, running). Bounded: when more than
    ``MESSAGE_SEARCH_LIMIT`` messages would have to be read, it answers True
    without reading them. Raises ``BrokerDown``.
    """
    if scheduled_waiting_ids([task_id]):
        return True
    names = [queue] if queue in settings.TASKCENTER_QUEUES else list(settings.TASKCENTER_QUEUES)
    present = queue_message_ids(names)
    return present is None or task_id in present


def queue_message_ids(names: list[str]) -> set[str] | None:
    """Task ids of every message the broker holds for queues ``names`` or unacked, in one snapshot.

    None when more than ``MESSAGE_SEARCH_LIMIT`` messages would have to be read.
    The lengths and the contents are each read in one MULTI/EXEC transaction, so
    a message moving from a queue to the unacked hash is not missed between two
    reads. Raises ``BrokerDown``.
    """
    with _broker_channel(gettext_noop("the messages could not be read")) as channel:
        client = channel.client
        lists = [key for name in names for key in priority_lists(channel, name).values()]
        pipe = client.pipeline(transaction=True)
        for key in lists:
            pipe.llen(key)
        pipe.hlen(channel.unacked_key)
        if sum(pipe.execute()) > MESSAGE_SEARCH_LIMIT:
            return None
        pipe = client.pipeline(transaction=True)
        for key in lists:
            pipe.lrange(key, 0, MESSAGE_SEARCH_LIMIT)
        pipe.hvals(channel.unacked_key)
        replies = pipe.execute()
    return {task_id for messages in replies for raw in messages if (task_id := _message_id(raw))}


def scheduled_waiting_ids(task_ids) -> set[str]:
    """Those of ``task_ids`` whose message waits in (or is being published from) the scheduled set."""
    from taskcenter import scheduled_set

    with _broker_channel(gettext_noop("the scheduled set could not be read")) as channel:
        return scheduled_set.waiting_among(channel.client, list(task_ids))


def _message_id(raw: bytes) -> str | None:
    """The task id of a message as a list holds it, or as the unacked hash holds it ([message, exchange, key])."""
    try:
        value = json.loads(raw)
    except (ValueError, TypeError):
        return None
    if isinstance(value, list) and value:
        value = value[0]
    headers = value.get("headers") if isinstance(value, dict) else None
    return headers.get("id") if isinstance(headers, dict) else None


# --- Helpers ---------------------------------------------------------------------


def _require_configured(name: str) -> None:
    queue_require_configured(name)


@contextmanager
def _broker_down_raised(consequence: str) -> Iterator:
    """Turn a broker error inside the block into ``BrokerDown`` saying ``consequence``."""
    try:
        yield
    except BROKER_ERRORS as exc:
        logger.warning("Broker unavailable: %s (%s)", consequence, exc)
        raise BrokerDown(broker_down_message(consequence)) from exc


@contextmanager
def _broker_channel(consequence: str) -> Iterator:
    """A kombu channel of the broker; raises ``BrokerDown`` saying ``consequence`` when it fails."""
    with _broker_down_raised(consequence), broker_channel() as channel:
        yield channel
