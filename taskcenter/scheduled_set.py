"""Delayed runs wait in taskcenter's scheduled set in Redis, not on a worker.

Celery publishes a task with a countdown or an ETA (a launch "in 10 minutes", a
retry with backoff, a schedule's jitter) at once; a worker takes it and keeps it,
unacknowledged, until it is due. On Redis that ties the visibility timeout to
the longest delay: a message unacknowledged for longer is given to another
worker while the first still waits on it, and the run happens twice
(celery#2481). A worker that dies takes its waiting messages with it until
they are restored.

Here, as in Sidekiq's scheduled set, every message this project's app would
publish more than ``TASKCENTER_SCHEDULED_MIN_DELAY`` seconds before it is due
is written to Redis instead (``hold``), and published when due by a pump that
runs in every worker (``Pump``, a thread started by ``ScheduledSetPump``). So
no message waits unacknowledged on a worker, the visibility timeout only has to
exceed the longest run, and a delay may be days long.

Keys (one id per task: a task's retries reuse its id, and only one of its
messages waits at a time):

- ``taskcenter:scheduled`` sorted set, task id -> due time (Unix seconds);
- ``taskcenter:scheduled:claimed`` sorted set, task id -> when a pump took it;
- ``taskcenter:scheduled:messages`` hash, task id -> the held message (JSON).

Each move is one Lua script, so two pumps never take the same message. A pump
claims the due ids, publishes each, then forgets it (``done``). A pump that
dies between claim and publish leaves the id claimed; any pump puts a claim
older than ``STALE_CLAIM_SECONDS`` back in the set (``rescue``). A message
published but not forgotten (a crash in the few microseconds between) is
published once more: the worker acknowledges a redelivered run that already
finished without running it (``taskcenter.worker``).
"""

import logging
import random
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import bootsteps
from celery.app.amqp import task_message
from django.conf import settings
from kombu.utils import json

logger = logging.getLogger(__name__)

SCHEDULED_KEY = "taskcenter:scheduled"
CLAIMED_KEY = "taskcenter:scheduled:claimed"
MESSAGES_KEY = "taskcenter:scheduled:messages"
KEYS = [SCHEDULED_KEY, CLAIMED_KEY, MESSAGES_KEY]

#: A claim older than this is taken to belong to a pump that died; its message goes back in the set.
STALE_CLAIM_SECONDS = 30
#: Messages a pump publishes per round at most.
CLAIM_BATCH = 200

#: Publish options that are objects of this process, rebuilt when the message is published.
_LOCAL_OPTIONS = {"declare", "event_dispatcher", "producer", "connection", "retry_policy", "exchange_type"}

# KEYS: scheduled, claimed, messages. ARGV: id, due, payload.
_HOLD = """
redis.call('HSET', KEYS[3], ARGV[1], ARGV[3])
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
return 1
"""
# ARGV: now, limit. Returns [id, payload, id, payload, ...] of the due messages, now claimed.
_CLAIM = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local out = {}
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], ARGV[1], id)
  table.insert(out, id)
  table.insert(out, redis.call('HGET', KEYS[3], id) or '')
end
return out
"""
# ARGV: id. Forget a published message, unless the id was held again meanwhile (a quick retry).
_DONE = """
if redis.call('ZREM', KEYS[2], ARGV[1]) == 1 and not redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('HDEL', KEYS[3], ARGV[1])
end
return 1
"""
# ARGV: claimed before, now. Put stale claims back in the set, due now.
_RESCUE = """
local ids = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', ARGV[1], 'LIMIT', 0, 500)
for _, id in ipairs(ids) do
  redis.call('ZREM', KEYS[2], id)
  if redis.call('HEXISTS', KEYS[3], id) == 1 then redis.call('ZADD', KEYS[1], ARGV[2], id) end
end
return #ids
"""
# ARGV: id. Take a waiting message out of the set; returns its payload, or false when it is not waiting.
_CANCEL = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 then
  local payload = redis.call('HGET', KEYS[3], ARGV[1])
  redis.call('HDEL', KEYS[3], ARGV[1])
  return payload or ''
end
return false
"""
# ARGV: id, now. Make a waiting message due now; 1 when it was waiting.
_DUE_NOW = """
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  redis.call('ZADD', KEYS[1], 'XX', ARGV[2], ARGV[1])
  return 1
end
return 0
"""
SCRIPTS = {"hold": _HOLD, "claim": _CLAIM, "done": _DONE, "rescue": _RESCUE, "cancel": _CANCEL, "due_now": _DUE_NOW}


# --- Deciding ---------------------------------------------------------------------


def due_time(headers: dict) -> float | None:
    """The message's ETA as Unix seconds, or None when it has none (or one that cannot be read).

    A naive ETA is read as UTC, as Celery's workers do with ``enable_utc``.
    """
    eta = headers.get("eta") if isinstance(headers, dict) else None
    if not eta or not isinstance(eta, str):
        return None
    try:
        when = datetime.fromisoformat(eta)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.timestamp()


def hold_until(headers: dict, *, now: float | None = None) -> float | None:
    """When to publish a message held in the set, or None to publish it now."""
    due = due_time(headers)
    now = time.time() if now is None else now
    if due is None or due - now <= settings.TASKCENTER_SCHEDULED_MIN_DELAY:
        return None
    return due


# --- Holding (any process that publishes) ----------------------------------------------


def _name(value) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return getattr(value, "name", None)


def payload_of(name: str, message, options: dict, *, due: float) -> str:
    """The JSON a held message is kept as: enough to publish it later from any process."""
    headers, properties, body, sent_event = message
    kept = {key: value for key, value in options.items() if key not in _LOCAL_OPTIONS}
    for key in ("queue", "exchange"):
        if key in kept:
            kept[key] = _name(kept[key])
    return json.dumps(
        {
            "name": name,
            "headers": headers,
            "properties": properties,
            "body": body,
            "sent_event": sent_event,
            "options": kept,
            "due": due,
        }
    )


def hold(client, name: str, message, options: dict, *, due: float) -> None:
    """Keep ``message`` in the set until ``due``; raises the client's errors when Redis fails."""
    task_id = message.headers["id"]
    client.register_script(_HOLD)(keys=KEYS, args=[task_id, due, payload_of(name, message, options, due=due)])
    logger.info("Holding %s [%s] in the scheduled set until %s", name, task_id, _iso(due))


def holding_sender(publish):
    """Wrap Celery's ``send_task_message`` so a message due later is held instead of published."""
    from celery import signals

    def send_task_message(producer, name, message, **options):
        due = hold_until(message.headers)
        # kombu's command client of the channel (its ``client`` may be waiting on a BRPOP).
        commands = getattr(getattr(producer, "channel", None), "conn_or_acquire", None)
        if due is None or commands is None:
            return publish(producer, name, message, **options)
        extra_headers = options.pop("headers", None)
        if extra_headers:  # as Celery's sender does (beat's periodic_task_name, ...)
            message.headers.update(extra_headers)
        # The same signals as a publish: the run is recorded (and stamped) when it is sent, not when it is due.
        queue = _name(options.get("queue")) or options.get("routing_key")
        signals.before_task_publish.send(
            sender=name, body=message.body, exchange=_name(options.get("exchange")), routing_key=queue,
            declare=None, headers=message.headers, properties=message.properties, retry_policy=None,
        )  # fmt: skip
        with commands() as client:
            hold(client, name, message, options, due=due)
        signals.after_task_publish.send(
            sender=name, body=message.body, exchange=_name(options.get("exchange")), routing_key=queue,
            headers=message.headers,
        )  # fmt: skip
        return None

    return send_task_message


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


# --- Reading and changing the set (pages, services) ------------------------------------


@dataclass(frozen=True)
class Held:
    task_id: str
    task_name: str
    queue: str
    due: datetime


def held_list(client, *, after: float | None = None, limit: int = 50) -> list[Held]:
    """Waiting messages in due order, from just after ``after`` (a keyset cursor)."""
    low = f"({after}" if after is not None else "-inf"
    pairs = client.zrangebyscore(SCHEDULED_KEY, low, "+inf", start=0, num=limit, withscores=True)
    ids = [member.decode() if isinstance(member, bytes) else member for member, _ in pairs]
    payloads = client.hmget(MESSAGES_KEY, ids) if ids else []
    held = []
    for (task_id, score), raw in zip(zip(ids, (score for _, score in pairs), strict=True), payloads, strict=True):
        name, queue = "", ""
        try:
            data = json.loads(raw) if raw else {}
            name, queue = str(data.get("name") or ""), str((data.get("options") or {}).get("queue") or "")
        except (TypeError, ValueError):
            pass
        held.append(Held(task_id=task_id, task_name=name, queue=queue, due=datetime.fromtimestamp(score, UTC)))
    return held


def held_count(client) -> int:
    return int(client.zcard(SCHEDULED_KEY))


def held_due(client, task_id: str) -> datetime | None:
    """When ``task_id`` is due, while it waits in the set."""
    score = client.zscore(SCHEDULED_KEY, task_id)
    return None if score is None else datetime.fromtimestamp(score, UTC)


def waiting_among(client, task_ids: list[str]) -> set[str]:
    """Those of ``task_ids`` waiting in the set or claimed by a pump (one round trip)."""
    if not task_ids:
        return set()
    pipe = client.pipeline(transaction=False)
    for task_id in task_ids:
        pipe.zscore(SCHEDULED_KEY, task_id)
        pipe.zscore(CLAIMED_KEY, task_id)
    replies = pipe.execute()
    return {
        task_id
        for index, task_id in enumerate(task_ids)
        if replies[2 * index] is not None or replies[2 * index + 1] is not None
    }


def cancel(client, task_id: str) -> bool:
    """Take ``task_id`` out of the set before it is published; False when it is not waiting there."""
    return client.register_script(_CANCEL)(keys=KEYS, args=[task_id]) is not None


def due_now(client, task_id: str) -> bool:
    """Make a waiting ``task_id`` due at once; False when it is not waiting there."""
    return bool(client.register_script(_DUE_NOW)(keys=KEYS, args=[task_id, time.time()]))


# --- Publishing when due (the pump) --------------------------------------------------


class Pump:
    """Publishes the set's due messages; one per worker, any number at once.

    ``connection`` is a ``taskcenter.broker.KeptOpenConnection`` with ``SCRIPTS``.
    """

    def __init__(self, app, connection):
        self.app = app
        self.connection = connection
        self.last_rescue = 0.0

    def run_once(self, *, now: float | None = None) -> int:
        """Publish what is due; returns how many were published. Raises broker errors."""
        from taskcenter.broker import BROKER_ERRORS
        from taskcenter.services.recording import launch_publishing

        now = time.time() if now is None else now
        if now - self.last_rescue >= STALE_CLAIM_SECONDS / 3:
            rescued = self.connection.run_script(
                "rescue", keys=KEYS, args=[now - STALE_CLAIM_SECONDS, now]
            )  # fmt: skip
            self.last_rescue = now
            if rescued:
                logger.warning("Put %s stale claim(s) back in the scheduled set", rescued)
        claimed = self.connection.run_script("claim", keys=KEYS, args=[now, CLAIM_BATCH])
        published = 0
        for index in range(0, len(claimed), 2):
            task_id, raw = _text(claimed[index]), claimed[index + 1]
            try:
                name, message, options = _message_of(raw)
            except (TypeError, ValueError, KeyError) as exc:
                logger.error("Dropped unreadable message %s from the scheduled set: %s", task_id, exc)
                _record_failure(self.app, task_id, f"unreadable message in the scheduled set: {exc}")
                self.connection.run_script("done", keys=KEYS, args=[task_id])
                continue
            try:
                # Its run was recorded when it was held: the publish signal must not write it again.
                with launch_publishing([task_id]), self.app.producer_or_acquire() as producer:
                    self.app.amqp.publish_task_message(producer, name, message, **options)
            except BROKER_ERRORS:
                raise  # it stays claimed, and is put back in the set once the claim is stale
            except Exception as exc:  # noqa: BLE001 (one message must not stop the others)
                logger.exception("Could not publish %s [%s] from the scheduled set; dropped", name, task_id)
                _record_failure(self.app, task_id, f"could not publish from the scheduled set: {exc}")
                self.connection.run_script("done", keys=KEYS, args=[task_id])
                continue
            self.connection.run_script("done", keys=KEYS, args=[task_id])
            published += 1
            logger.info("Published %s [%s] from the scheduled set", name, task_id)
        return published


def _record_failure(app, task_id: str, reason: str) -> None:
    """Record a held message that cannot be published as a failed run, so it is not lost silently."""
    from taskcenter.worker import MessageRejected

    try:
        app.backend.mark_as_failure(task_id, MessageRejected(reason))
    except Exception:  # noqa: BLE001 (a record that cannot be written must not stop the pump)
        logger.exception("Could not record the failure of %s", task_id)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def _message_of(raw) -> tuple[str, tuple, dict]:
    data = json.loads(raw)
    headers, properties = data["headers"], data["properties"]
    if not isinstance(headers, dict) or not isinstance(properties, dict) or not isinstance(data["name"], str):
        raise ValueError("not a held task message")
    options = data.get("options") or {}
    options["retry"] = False  # a failed publish stays claimed and is rescued
    # Due, or made due early by "run now": a worker must run it at once, not wait for a later ETA.
    # A past ETA is kept: the task-received event carries it, and the monitor records it as
    # the time the retry was due.
    due = due_time(headers)
    if due is not None and due > time.time():
        headers["eta"] = datetime.now(UTC).isoformat()
    message = task_message(headers=headers, properties=properties, body=data["body"], sent_event=data.get("sent_event"))
    return data["name"], message, options


class ScheduledSetPump(bootsteps.StartStopStep):
    """Worker step: a thread that publishes the scheduled set's due messages every second or so."""

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.app = worker.app
        self.stopping = threading.Event()
        self.thread: threading.Thread | None = None

    def start(self, worker):
        self.thread = threading.Thread(target=self._loop, name="taskcenter-scheduled-set", daemon=True)
        self.thread.start()

    def stop(self, worker):
        self.stopping.set()

    def _loop(self) -> None:
        from taskcenter.broker import BROKER_ERRORS, KeptOpenConnection

        pump = Pump(self.app, KeptOpenConnection(self.app, scripts=SCRIPTS))
        interval = settings.TASKCENTER_SCHEDULED_POLL_SECONDS
        failing = False
        while not self.stopping.wait(interval * random.uniform(0.5, 1.5)):  # noqa: S311 (spreads the pumps)
            try:
                while pump.run_once() >= CLAIM_BATCH:  # a backlog is published at once
                    pass
                failing = False
            except BROKER_ERRORS as exc:
                if not failing:
                    logger.warning("Scheduled set: broker unavailable (%s); retrying", exc)
                failing = True
            except Exception:  # noqa: BLE001 (the pump must outlive any one message)
                logger.exception("Scheduled set: publishing failed; retrying")
