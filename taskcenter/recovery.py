"""Nothing lost: task messages held unacknowledged by a worker that is gone go back to their queue at once.

With ``task_acks_late`` a task message stays in kombu's ``unacked`` hash (and the
``unacked_index`` sorted set, scored by delivery time) until the worker that
received it acknowledges it; kombu itself gives it back only after the
visibility timeout (two hours here). The monitor runs ``Recovery.sweep`` every
few seconds instead:

1. read the delivery tags older than ``TASKCENTER_RECOVERY_MIN_AGE`` seconds and,
   once per tag, the task id and queue of each (bounded per sweep);
2. ask every worker (one broadcast, ``taskcenter_held``) for the ids it holds:
   running, reserved, or waiting for an ETA;
3. when every worker the monitor counts as alive has answered, give back each
   message that no worker holds (``orphans``): one Lua script checks that the
   entry is still the same in ``unacked``, pushes it to the head of its priority
   list marked ``redelivered`` (as kombu's own restore does), and removes it from
   the hash and the index.

The message of a run whose worker is gone follows its task type's recovery
strategy (``orphan_plan``, decided by the monitor through a ``plan`` callback,
see ``taskcenter.services.recovery.orphans_plan``): no strategy, RETRY and RESUME
give it back (the same run runs again; a RESUME task reads its own last
checkpoint), RESTART gives it back after its checkpoints are discarded, SKIP and
MANUAL take it out of ``unacked`` without running it (``unacked_remove``, the same
check that the entry is unchanged) and the run is recorded failed. A message
dropped by a live worker (a broker restart) is always given back: its run did
not fail, the broker went away for a while.

A worker counts as alive while its heartbeats arrive (``TASKCENTER_WORKER_LOST_SECONDS``)
and it sent no ``worker-offline``; a slow worker that still sends heartbeats or answers
keeps its tasks. A worker killed (SIGKILL), or cut off by a broker restart (Celery
cancels its late-acknowledged tasks when the connection drops and forgets the reserved
ones), no longer holds their ids, so their messages come back within seconds.

The decisions (``alive_workers``, ``orphans``) are pure functions; the Redis side is
``unacked_read`` and ``unacked_restore``.
"""

import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace

from django.conf import settings

from taskcenter.strategies import Strategy

logger = logging.getLogger(__name__)

#: Name of the worker control command that lists the task ids a worker holds (see taskcenter.worker).
HELD_COMMAND = "taskcenter_held"
#: Delivery tags whose message is read per sweep at most (the rest wait for the next sweep).
READ_BATCH = 500
#: Messages given back per sweep at most.
RESTORE_BATCH = 500

# KEYS: unacked hash, unacked index, target lists. ARGV: tag, entry as read, payload to push.
# The entry must still be the one read: otherwise its worker acknowledged it (or kombu restored it) meanwhile.
_RESTORE_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
for i = 3, #KEYS do redis.call('RPUSH', KEYS[i], ARGV[3]) end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

# KEYS: unacked hash, unacked index. ARGV: tag, entry as read. Takes the message out without running it again.
_REMOVE_SCRIPT = """
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""

#: ``lost_reason`` of a message whose worker is gone: only those follow their task type's strategy.
WORKER_LOST = "worker lost"


@dataclass(frozen=True)
class Unacked:
    """One message in kombu's ``unacked`` hash."""

    tag: str
    task_id: str | None
    queue: str
    delivered_at: float
    task_name: str = ""


def recovery_settings() -> tuple[float, float, float]:
    """Seconds between sweeps, minimum age of a message judged, and heartbeat silence that means a worker is lost."""
    return (
        float(getattr(settings, "TASKCENTER_RECOVERY_INTERVAL", 3.0)),
        float(getattr(settings, "TASKCENTER_RECOVERY_MIN_AGE", 5.0)),
        float(getattr(settings, "TASKCENTER_WORKER_LOST_SECONDS", 15.0)),
    )


# --- decisions (pure) ----------------------------------------------------------------


def alive_workers(
    workers: list[dict],
    *,
    now: float,
    lost_seconds: float,
    watching_since: float | None,
    stream_lost_at: float | None,
) -> set[str]:
    """Hostnames of the workers that must answer before anything is given back.

    ``workers`` are the monitor's worker states (``hostname``, ``online``,
    ``last_heartbeat``). A worker is alive when it sent no ``worker-offline`` and its
    last heartbeat is younger than ``lost_seconds``. Heartbeats are only seen while
    the monitor reads events: while it has read them for less than ``lost_seconds``
    (``watching_since``), a worker heard from within ``lost_seconds`` before the
    event stream was lost (``stream_lost_at``, or ``watching_since`` at start) counts as alive;
    so does one, while the stream is down (``watching_since`` None).
    """
    cutoff = now - lost_seconds
    if watching_since is None:
        cutoff = min(cutoff, (stream_lost_at or now) - lost_seconds)
    elif now - watching_since < lost_seconds:
        cutoff = min(cutoff, (stream_lost_at or watching_since) - lost_seconds)
    alive = set()
    for state in workers:
        heartbeat = state.get("last_heartbeat")
        if state.get("online", True) and isinstance(heartbeat, int | float) and heartbeat >= cutoff:
            alive.add(state["hostname"])
    return alive


def orphans(
    entries: list[Unacked],
    held: dict[str, set[str]] | None,
    *,
    alive: set[str],
    queues: set[str],
    now: float,
    min_age: float,
    holders: dict[str, str] | None = None,
) -> list[Unacked]:
    """The entries no worker holds (``held``: the ids each worker that answered holds, by hostname).

    When every alive worker answered, every entry held by none is an orphan. When some
    did not (a slow worker, or one that just died and still counts as alive), only the
    entries whose last holder (``holders``, from events) is a worker that is not alive
    are: an alive worker that did not answer may be running the others.
    Only messages of taskcenter's queues with a task id, delivered at least ``min_age`` seconds ago, are judged.
    """
    if held is None:
        return []
    everyone_answered = alive <= set(held)
    holders = {} if holders is None else holders
    holding = set().union(*held.values()) if held else set()
    return [
        entry
        for entry in entries
        if entry.task_id is not None
        and entry.queue in queues
        and now - entry.delivered_at >= min_age
        and entry.task_id not in holding
        and (everyone_answered or _held_by_a_lost_worker(holders.get(entry.task_id), alive))
    ]


def _held_by_a_lost_worker(holder: str | None, alive: set[str]) -> bool:
    return holder is not None and holder not in alive


def lost_reason(holder: str | None, alive: set[str]) -> str:
    """Why the attempt of a message given back ended: its worker died, or dropped it (broker connection lost)."""
    if holder and holder not in alive:
        return WORKER_LOST
    return "broker lost"


@dataclass(frozen=True)
class OrphanPlan:
    """What to do with one orphaned message: the strategy applied (None: give it back, nothing recorded)."""

    strategy: Strategy | None = None
    rule: str = ""
    discarded: int = 0  # checkpoints discarded before it was given back (RESTART)

    @property
    def removes(self) -> bool:
        """Taken out of the broker instead of given back: SKIP and MANUAL do not run it again."""
        return self.strategy in (Strategy.SKIP, Strategy.MANUAL)


def orphan_plan(
    strategy: Strategy | None, rule: str, *, reason: str, finished: bool, automatic: int, limit: int
) -> OrphanPlan:
    """The strategy applied to an orphaned run of a task type whose strategy is ``strategy`` (from ``rule``).

    Only a run whose worker is gone (``reason``) follows it: a message dropped by a
    live worker (the broker went away) and a run already finished (its redelivery
    is acknowledged unrun) are given back as they are. After ``limit`` automatic
    recoveries in the run's lineage (``automatic``) it is left MANUAL, as after a
    final failure, so a run that kills its worker every time does not loop forever.
    """
    if strategy is None or finished or reason != WORKER_LOST:
        return OrphanPlan()
    if strategy != Strategy.MANUAL and automatic >= limit:
        return OrphanPlan(Strategy.MANUAL, f"{rule}; limit of {limit} reached")
    return OrphanPlan(Strategy(strategy), rule)


class HolderTracker:
    """Which worker last received or started each task id, from task events (bounded, oldest forgotten)."""

    RECEIVED = ("task-received", "task-started")
    ENDED = ("task-succeeded", "task-failed", "task-revoked", "task-rejected", "task-retried")

    def __init__(self, *, max_ids: int = 100_000):
        self.max_ids = max_ids
        self.holders: OrderedDict[str, str] = OrderedDict()

    def handle(self, event: dict) -> None:
        kind, task_id, hostname = event.get("type"), event.get("uuid"), event.get("hostname")
        if not isinstance(task_id, str) or not isinstance(hostname, str):
            return
        if kind in self.RECEIVED:
            self.holders[task_id] = hostname
            self.holders.move_to_end(task_id)
            if len(self.holders) > self.max_ids:
                self.holders.popitem(last=False)
        elif kind in self.ENDED and self.holders.get(task_id) == hostname:
            del self.holders[task_id]


# --- the broker side ------------------------------------------------------------------


def parse_entry(tag: str, raw, delivered_at: float) -> Unacked:
    """An ``unacked`` hash value (JSON ``[message, exchange, routing_key]``) as an ``Unacked``."""
    task_id, queue, task_name = None, "", ""
    try:
        message, _exchange, routing_key = json.loads(raw)
        headers = message.get("headers") or {}
        task_id = headers.get("id") if isinstance(headers.get("id"), str) else None
        task_name = headers.get("task") if isinstance(headers.get("task"), str) else ""
        queue = str(routing_key or "")
    except (TypeError, ValueError, AttributeError):
        logger.warning("Unreadable entry %s in the unacked hash", tag)
    return Unacked(tag=tag, task_id=task_id, queue=queue, delivered_at=delivered_at, task_name=task_name)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


class UnackedReader:
    """Reads kombu's unacked messages, remembering the task id and queue of each delivery tag it read once."""

    def __init__(self):
        self.known: dict[str, Unacked] = {}

    def read(self, channel, *, older_than: float) -> list[Unacked]:
        """The unacked entries delivered before ``older_than`` (a Unix time); at most ``READ_BATCH`` new ones read."""
        client = channel.client
        scored = client.zrange(channel.unacked_index_key, "-inf", older_than, byscore=True, withscores=True)
        tags = {_text(tag): float(score) for tag, score in scored}
        self.known = {tag: entry for tag, entry in self.known.items() if tag in tags}
        new = [tag for tag in tags if tag not in self.known][:READ_BATCH]
        if new:
            for tag, raw in zip(new, client.hmget(channel.unacked_key, new), strict=True):
                if raw is not None:
                    self.known[tag] = parse_entry(tag, raw, tags[tag])
        return [self.known[tag] for tag in tags if tag in self.known]


def unacked_restore(channel, tag: str, script=None) -> str | None:
    """Give the unacked message ``tag`` back to the head of its queue, marked redelivered.

    Returns the task id given back, or None when the entry is gone (acknowledged, or
    restored by someone else) or changed meanwhile.
    """
    client = channel.client
    raw = client.hget(channel.unacked_key, tag)
    if raw is None:
        return None
    try:
        payload, exchange, routing_key = json.loads(raw)
        payload.setdefault("headers", {})["redelivered"] = True
        payload.setdefault("properties", {}).setdefault("delivery_info", {})["redelivered"] = True
        queues = channel._lookup(exchange, routing_key)
    except (TypeError, ValueError, AttributeError, KeyError):
        logger.warning("Unacked entry %s cannot be given back: unreadable", tag)
        return None
    if not queues:
        return None
    priority = channel._get_message_priority(payload, reverse=False)
    targets = sorted(channel._q_for_pri(queue, priority) for queue in queues)
    script = script or client.register_script(_RESTORE_SCRIPT)
    moved = script(
        keys=[channel.unacked_key, channel.unacked_index_key, *targets], args=[tag, raw, json.dumps(payload)]
    )
    return (payload.get("headers") or {}).get("id") if moved else None


def unacked_remove(channel, tag: str, script=None) -> str | None:
    """Take the unacked message ``tag`` out of the broker without running it again (SKIP, MANUAL).

    Returns its task id, or None when the entry is gone or changed meanwhile.
    """
    client = channel.client
    raw = client.hget(channel.unacked_key, tag)
    if raw is None:
        return None
    task_id = parse_entry(tag, raw, 0.0).task_id
    script = script or client.register_script(_REMOVE_SCRIPT)
    removed = script(keys=[channel.unacked_key, channel.unacked_index_key], args=[tag, raw])
    return task_id if removed else None


def held_by_workers(app, *, timeout: float, expected: int | None = None) -> dict[str, set[str]]:
    """Ask every worker which task ids it holds; {hostname: ids} of those that answered in ``timeout`` seconds.

    With ``expected``, returns as soon as that many workers answered.
    """
    replies = app.control.broadcast(HELD_COMMAND, reply=True, timeout=timeout, limit=expected or None) or []
    held = {}
    for reply in replies:
        for hostname, answer in reply.items():
            if isinstance(answer, dict) and isinstance(answer.get("ids"), list):
                held[hostname] = {task_id for task_id in answer["ids"] if isinstance(task_id, str)}
            else:  # an older worker without the command: it answered, but not what it holds
                logger.warning("Worker %s did not tell which tasks it holds: %.200r", hostname, answer)
    return held


@dataclass(frozen=True)
class Restored:
    """An orphaned message given back (or, with ``plan.removes``, taken out), and the strategy applied."""

    task_id: str
    queue: str
    holder: str | None
    reason: str
    task_name: str = ""
    plan: OrphanPlan = OrphanPlan()

    @property
    def removed(self) -> bool:
        return self.plan.removes


#: Given the orphans found, their plans by task id (missing: given back); None to act on none of them this sweep.
Planner = Callable[[list[Restored]], dict[str, OrphanPlan] | None]


class Recovery:
    """The monitor's sweep for messages held by no worker (see the module docstring)."""

    def __init__(self, app, *, reply_timeout: float = 1.0):
        self.app = app
        self.reply_timeout = reply_timeout
        self.reader = UnackedReader()
        self._scripts = {}

    def sweep(
        self,
        channel,
        *,
        workers: list[dict],
        holders: dict[str, str],
        watching_since: float | None,
        stream_lost_at: float | None,
        now: float | None = None,
        plan: Planner | None = None,
    ) -> list[Restored]:
        """Give back (or take out) the messages no worker holds; returns what was done.

        ``channel`` is a kombu Redis channel of the broker; ``holders`` maps task ids to
        the worker that last received or started them (from events); ``plan`` decides
        each orphan's strategy (without it, every orphan is given back). Raises a
        ``taskcenter.broker.BROKER_ERRORS`` error when the broker fails.
        """
        _interval, min_age, lost_seconds = recovery_settings()
        now = time.time() if now is None else now
        entries = self.reader.read(channel, older_than=now - min_age)
        if not entries:
            return []
        alive = alive_workers(
            workers, now=now, lost_seconds=lost_seconds, watching_since=watching_since, stream_lost_at=stream_lost_at
        )
        held = held_by_workers(self.app, timeout=self.reply_timeout, expected=len(alive))
        missing = alive - set(held)
        if missing:
            logger.info(
                "Worker(s) %s did not answer: only messages of workers that are gone are given back",
                ", ".join(sorted(missing)),
            )
        queues = set(settings.TASKCENTER_QUEUES)
        found = orphans(entries, held, alive=alive, queues=queues, now=now, min_age=min_age, holders=holders)
        found = found[:RESTORE_BATCH]
        if not found:
            return []
        candidates = {}
        for entry in found:
            holder = holders.get(entry.task_id)
            candidates[entry.tag] = Restored(
                task_id=entry.task_id, queue=entry.queue, holder=holder, reason=lost_reason(holder, alive),
                task_name=entry.task_name,
            )  # fmt: skip
        plans = plan(list(candidates.values())) if plan is not None else {}
        if plans is None:
            return []  # the planner could not decide (database down): they wait for the next sweep
        restored = []
        for entry in found:
            item = replace(candidates[entry.tag], plan=plans.get(entry.task_id) or OrphanPlan())
            if item.removed:
                done = unacked_remove(channel, entry.tag, self._script(channel, _REMOVE_SCRIPT))
            else:
                done = unacked_restore(channel, entry.tag, self._script(channel, _RESTORE_SCRIPT))
            if done is None:
                continue
            self.reader.known.pop(entry.tag, None)
            restored.append(item)
            logger.warning(
                "%s queue %s the message of run %s (%s: no worker holds it; last held by %s)%s",
                "Took out of" if item.removed else "Gave back to", entry.queue, entry.task_id, item.reason,
                item.holder or "unknown", f"; strategy {item.plan.strategy}" if item.plan.strategy else "",
            )  # fmt: skip
        return restored

    def _script(self, channel, text: str):
        """The Lua script registered on this channel's client (a reconnection brings a new client)."""
        key = (id(channel.client), text)
        if key not in self._scripts:
            self._scripts = {k: v for k, v in self._scripts.items() if k[0] == key[0]}
            self._scripts[key] = channel.client.register_script(text)
        return self._scripts[key]
