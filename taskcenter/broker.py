"""The broker (Redis) as taskcenter reads and writes it directly, beside Celery's own use.

- ``BROKER_ERRORS``: what a broker that is down, frozen or failing raises, from kombu or redis-py,
  and ``broker_down_message()``, what the operator is told then;
- ``broker_client()``: a redis-py client of the broker for a block, bounded by a timeout;
- ``KeptOpenConnection``: one connection a long-lived process keeps, with its Lua scripts
  registered (the monitor lock and the beat lock use it); ``BrokerLock``: a single-holder lock on it;
- ``queue_backlogs()`` and ``oldest_ages()``: what waits in each queue, for the queues page,
  the alerts and the monitor's samples;
- ``use_long_lived_timeouts()``: the longer socket timeouts of a worker or beat, set at its start;
- ``ReusingConnection``: the app's kombu connection class, whose Redis channels build one
  redis-py client per connection pool instead of one per command.

Web requests and commands use the short ``BROKER_REQUEST_TIMEOUT`` of the settings, so a frozen
broker fails a page or a launch within 2 s; long-lived processes wait longer before they drop a
connection (``BROKER_LONG_LIVED_TRANSPORT_OPTIONS``).
"""

import json
import logging
import math
import time
import types
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.utils.translation import gettext as _
from kombu.connection import Connection, ConnectionPool, PooledConnection
from kombu.exceptions import BatchPublishError
from kombu.exceptions import OperationalError as KombuOperationalError
from kombu.utils.collections import HashedSeq
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

#: Errors of a broker that cannot be reached, does not answer in time, or fails a command.
#: kombu raises ``OperationalError`` for connection failures; redis-py its own errors;
#: sockets ``OSError`` (``ConnectionError`` and ``TimeoutError`` are ``OSError`` too).
#: Not every ``KombuError``: an ``EncodeError`` is a bad message, not a broker outage.
BROKER_ERRORS = (KombuOperationalError, RedisError, OSError)


def broker_down_message(consequence: str) -> str:
    """The operator's message for a broker that cannot be reached, in the active language.

    ``consequence`` is written in English and marked with ``gettext_noop`` where it is written
    (so logs stay English); it is translated here.
    """
    return _("The message broker (Redis) is not reachable, so %(consequence)s. Check that Redis is running.") % {
        "consequence": _(consequence)
    }


def request_timeout() -> float:
    """Seconds one broker round trip may take in a web request or a command."""
    return float(getattr(settings, "BROKER_REQUEST_TIMEOUT", 0.4))


def long_lived_transport_options() -> dict:
    """Transport options of a long-lived process: the settings' options with its longer timeouts."""
    conf = current_app.conf
    return {**(conf.broker_transport_options or {}), **getattr(settings, "BROKER_LONG_LIVED_TRANSPORT_OPTIONS", {})}


def use_long_lived_timeouts(sender=None, **_) -> None:
    """Give this process (a worker or beat, at its start) the long-lived broker timeouts.

    Connected to ``worker_init`` and ``beat_init``: the worker's consumers and beat's
    publisher then tolerate a short stall of Redis instead of reconnecting.
    """
    app = getattr(sender, "app", None) or current_app
    options = {**(app.conf.broker_transport_options or {}), **settings.BROKER_LONG_LIVED_TRANSPORT_OPTIONS}
    # Django settings are read under the CELERY_ namespace, which wins over the bare key.
    app.conf["CELERY_BROKER_TRANSPORT_OPTIONS"] = app.conf["broker_transport_options"] = options
    app._pool = None
    logger.debug("Broker transport options of a long-lived process: %s", options)


def broker_connection(app=None, *, long_lived: bool = False):
    """A new kombu connection to the broker (not connected yet); release it when done."""
    app = app or current_app
    if long_lived:
        return app.connection_for_write(transport_options=long_lived_transport_options())
    return app.connection_for_write()


@contextmanager
def broker_client(app=None, *, timeout: float | None = None) -> Iterator:
    """A redis-py client of the broker for a block; raises a ``BROKER_ERRORS`` error when it is down.

    Connecting gives up after ``timeout`` seconds (the request timeout by default): a second
    attempt is made only for a refused connection, never after a first one timed out.
    """
    connection = broker_connection(app)
    try:
        connection.ensure_connection(
            max_retries=1, interval_start=0, interval_step=0, timeout=timeout or request_timeout()
        )
        yield connection.default_channel.client
    finally:
        connection.release()


@contextmanager
def pooled_broker_client(app=None, *, timeout: float = 2.0) -> Iterator:
    """A redis-py client on a connection of the app's pool (kept open between uses, as a worker wants).

    For reads on a worker's failure path (e.g. a retry policy override): no new connection
    per call. Waits at most ``timeout`` seconds for a free connection.
    """
    app = app or current_app
    with app.pool.acquire(block=True, timeout=timeout) as connection:
        yield connection.default_channel.client


@contextmanager
def publishing_together(app=None) -> Iterator:
    """A producer of the app whose publishes in the block reach Redis in one round trip, as the block ends.

    A task message and its task-sent event are two commands (LPUSH, then PUBLISH);
    kombu's publish batch (``Producer.batch``) sends them in one pipeline, in that order:
    one round trip and one redis-py command less per launch (about 0.09 ms on redis-py 8).
    Nothing is sent if the block raises. kombu never replays a batch (where the transport
    would retry a command, it publishes at once instead); a batch that fails on a broker
    error is raised as kombu's ``OperationalError``, one of ``BROKER_ERRORS``.
    """
    app = app or current_app
    with app.producer_or_acquire() as producer:
        try:
            with producer.batch():
                yield producer
        except BatchPublishError as exc:
            if isinstance(exc.__cause__, BROKER_ERRORS):
                raise KombuOperationalError(f"{exc}: {exc.__cause__}") from exc
            raise


@contextmanager
def broker_channel(app=None) -> Iterator:
    """A kombu channel of the broker for a block (for kombu's own key names of queues)."""
    connection = broker_connection(app)
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=request_timeout())
        yield connection.default_channel
    finally:
        connection.release()


def client_reusing(create_client):
    """Wrap a kombu Redis channel's ``_create_client`` to keep one client per connection pool.

    kombu builds a new ``redis.Redis`` for every command it sends outside BRPOP: each
    LPUSH of a publish, each task-sent event PUBLISH, each acknowledgement. redis-py 8
    fills ~170 response callbacks per client, about 0.1 ms each time. A client holds no
    connection of its own (it takes one from the pool for each command), so one per pool
    serves every caller; a new pool (after a reconnect) gets a new client.
    """
    if getattr(create_client, "taskcenter_reused", False):
        return create_client

    def _create_client(self, asynchronous=False):
        pool = self.async_pool if asynchronous else self.pool
        clients = self.__dict__.setdefault("_taskcenter_clients", {})
        cached = clients.get(asynchronous)
        if cached is None or cached[0] is not pool:
            cached = clients[asynchronous] = (pool, create_client(self, asynchronous=asynchronous))
        return cached[1]

    _create_client.taskcenter_reused = True
    return _create_client


class _ReusesClients:
    """``channel()`` of a kombu connection whose Redis channels reuse their clients."""

    def __eqhash__(self):
        # kombu's process-wide pools (``kombu.pools``, behind ``app.pool``) are keyed by this:
        # a plain kombu connection to the same URL, made first, must not hand the app its pool.
        return HashedSeq("taskcenter-reusing", super().__eqhash__())

    def channel(self):
        channel = super().channel()
        create_client = getattr(type(channel), "_create_client", None)
        if create_client is not None and not getattr(create_client, "taskcenter_reused", False):
            channel._create_client = types.MethodType(client_reusing(create_client), channel)
        return channel


class _ReusingPooledConnection(_ReusesClients, PooledConnection):
    pass


class _ReusingConnectionPool(ConnectionPool):
    def new(self):
        return _ReusingPooledConnection(self, **dict(self.connection._info(resolve=False)))


class ReusingConnection(_ReusesClients, Connection):
    """The app's broker connection (``TaskcenterAMQP.Connection``): its Redis channels reuse their clients.

    So do the connections of its pool (``app.pool``, the producers' pool), which kombu
    makes as its own ``PooledConnection``. Per channel, not by patching kombu's class, so
    another Celery app in the same process (a benchmark's stock app) keeps kombu's own
    behaviour. Other transports are left as they are.
    """

    def Pool(self, limit=None, **kwargs):  # noqa: N802 (kombu's name)
        return _ReusingConnectionPool(self, limit=limit, **kwargs)


class KeptOpenConnection:
    """One broker connection a long-lived process keeps open, with its Lua scripts registered.

    ``scripts`` maps names to Lua sources; ``script(name)`` gives the registered script
    (redis-py runs it by SHA and loads it again after a Redis restart). Inside ``calls()``
    a ``BROKER_ERRORS`` error drops the connection, which is made again on the next call.
    """

    def __init__(self, app=None, *, scripts: dict[str, str] | None = None, timeout: float = 2.0):
        self.app = app
        self.sources = dict(scripts or {})
        self.timeout = timeout
        self._connection = None
        self._client = None
        self._scripts: dict = {}

    @property
    def connected(self) -> bool:
        return self._client is not None

    def client(self):
        """The redis-py client, connecting first if needed; raises a ``BROKER_ERRORS`` error."""
        if self._client is None:
            connection = broker_connection(self.app or current_app, long_lived=True)
            try:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=self.timeout)
                client = connection.default_channel.client
            except BaseException:
                connection.release()
                raise
            self._connection, self._client = connection, client
            self._scripts = {name: client.register_script(source) for name, source in self.sources.items()}
        return self._client

    def script(self, name: str):
        self.client()
        return self._scripts[name]

    def run_script(self, name: str, *, keys: list, args: list):
        """Run the registered script ``name``; drops the connection on a broker error."""
        with self.calls() as client:
            return self._scripts[name](keys=keys, args=args, client=client)

    def disconnect(self) -> None:
        """Close the connection (never raises); the next call connects again."""
        connection, self._connection, self._client, self._scripts = self._connection, None, None, {}
        if connection is not None:
            try:
                connection.release()
            except BROKER_ERRORS:
                pass

    @contextmanager
    def calls(self) -> Iterator:
        """The client for a block of commands; a broker error drops the connection and is raised."""
        try:
            yield self.client()
        except BROKER_ERRORS:
            self.disconnect()
            raise


# Take the lock when it is free or ours (renewing it); 0 when another holder has it.
_HOLD_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
# Give the lock up only if ours; then delete the other keys given (state that dies with the holder).
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class BrokerLock:
    """A lock in the broker held by one ``identity`` at a time, with an expiry, over a kept-open connection.

    Checking the holder and acting on the answer is one Lua script, so two processes never
    both believe they hold it. Every method raises a ``BROKER_ERRORS`` error when the
    broker does not answer.
    """

    def __init__(self, key: str, *, identity: str, seconds: float, connection: KeptOpenConnection | None = None):
        self.key = key
        self.identity = identity
        self.seconds = seconds
        self.connection = connection or KeptOpenConnection()
        self.connection.sources.update(lock_hold=_HOLD_SCRIPT, lock_release=_RELEASE_SCRIPT)

    def hold(self) -> bool:
        """Take the lock if free, renew it if ours; False when another holder has it."""
        return bool(
            self.connection.run_script(
                "lock_hold", keys=[self.key], args=[self.identity, max(1, int(self.seconds * 1000))]
            )
        )

    def holder(self) -> str:
        with self.connection.calls() as client:
            return _text(client.get(self.key))

    def release(self, *, also_delete: tuple[str, ...] = ()) -> bool:
        """Give the lock up if ours, deleting ``also_delete`` keys with it; True when it was ours."""
        return bool(self.connection.run_script("lock_release", keys=[self.key, *also_delete], args=[self.identity]))


# --- Queue backlogs ----------------------------------------------------------------


@dataclass(frozen=True)
class Backlog:
    """What the broker holds for one queue: messages per priority step and the oldest message of each list."""

    by_step: dict[int, int]
    oldest_messages: list[bytes]

    @property
    def depth(self) -> int:
        return sum(self.by_step.values())


def priority_lists(channel, name: str) -> dict[int, str]:
    """The Redis list of each priority step of queue ``name``, named by kombu itself."""
    return {step: channel._q_for_pri(name, step) for step in channel.priority_steps}


def queue_backlogs(names: list[str]) -> dict[str, Backlog]:
    """The length and oldest message of every priority list of ``names``, in one round trip.

    Raises a ``BROKER_ERRORS`` error when the broker cannot be read.
    """
    with broker_channel() as channel:
        keys = {name: priority_lists(channel, name) for name in names}
        pipe = channel.client.pipeline(transaction=False)
        for lists in keys.values():
            for key in lists.values():
                pipe.llen(key)
                pipe.lindex(key, -1)
        replies = iter(pipe.execute())
    backlogs = {}
    for name, lists in keys.items():
        by_step, oldest = {}, []
        for step in lists:
            by_step[step] = int(next(replies))
            tail = next(replies)
            if tail is not None:
                oldest.append(tail)
        backlogs[name] = Backlog(by_step=by_step, oldest_messages=oldest)
    return backlogs


def message_headers(raw: bytes) -> dict:
    """The headers of a message as kombu stores it (a JSON envelope); {} when unreadable."""
    try:
        headers = json.loads(raw).get("headers")
    except (ValueError, TypeError, AttributeError):
        logger.warning("Unreadable message in the broker: %.200r", raw)
        return {}
    return headers if isinstance(headers, dict) else {}


def message_sent_at(headers: dict) -> float | None:
    """When a message was published (the ``SENT_AT_HEADER`` stamped at publish), as Unix seconds; None without it."""
    from taskcenter.services.recording import SENT_AT_HEADER

    value = headers.get(SENT_AT_HEADER)
    return float(value) if _is_number(value) and math.isfinite(value) else None


def oldest_ages(backlogs: dict[str, Backlog], *, now: float | None = None) -> dict[str, float | None]:
    """Seconds since the oldest message of each queue was sent (None for an empty queue).

    The send time is the ``SENT_AT_HEADER`` stamped at publish; messages without it fall back to
    the creation time of their run (one query for all of them).
    """
    from taskcenter.models import Run
    from taskcenter.services.recording import SENT_AT_HEADER

    headers = {name: [message_headers(raw) for raw in b.oldest_messages] for name, b in backlogs.items()}
    unstamped = {h.get("id") for hs in headers.values() for h in hs if not _is_number(h.get(SENT_AT_HEADER))}
    unstamped = {task_id for task_id in unstamped if isinstance(task_id, str)}
    created = (
        dict(Run.objects.filter(task_result_id__in=unstamped).values_list("task_result_id", "created_at"))
        if unstamped
        else {}
    )

    def sent_at(h: dict) -> float | None:
        if _is_number(h.get(SENT_AT_HEADER)):
            return float(h[SENT_AT_HEADER])
        run_created = created.get(h.get("id")) if isinstance(h.get("id"), str) else None
        return run_created.timestamp() if run_created else None

    now = time.time() if now is None else now
    ages = {}
    for name, hs in headers.items():
        times = [t for t in map(sent_at, hs) if t is not None]
        ages[name] = max(0.0, now - min(times)) if times else None
    return ages


def _is_number(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _text(value) -> str:
    return value.decode() if isinstance(value, bytes) else (value or "")


#: Messages a queue position search reads at most (from the head of the queue, in serving order).
POSITION_SCAN_LIMIT = 10_000
_POSITION_CHUNK = 500


@dataclass
class QueuePosition:
    """Where a message waits in its queue: ``position`` 1 is served next; None when not found.

    ``beyond`` is true when the search stopped at its limit before finding it (more than
    ``scanned`` messages are ahead of it, or it is not in the queue at all).
    """

    position: int | None
    scanned: int
    beyond: bool


def queue_position(channel, queue: str, task_id: str, *, limit: int = POSITION_SCAN_LIMIT) -> QueuePosition:
    """Find ``task_id`` among the first ``limit`` messages of ``queue``, in the order workers take them.

    Workers take from the list of the most urgent priority step first, and from the tail of
    each list (kombu pushes at the head, BRPOPs the tail), so the search reads lists in step
    order and each from its tail, in chunks of 500 messages. Raises a ``BROKER_ERRORS`` error
    when the broker cannot be read.
    """
    lists = [key for _, key in sorted(priority_lists(channel, queue).items())]
    client = channel.client
    pipe = client.pipeline(transaction=False)
    for key in lists:
        pipe.llen(key)
    lengths = [int(n) for n in pipe.execute()]
    needle = task_id.encode("utf-8", "surrogatepass")
    ahead = 0
    for key, length in zip(lists, lengths, strict=True):
        read = 0
        while read < length:
            if ahead >= limit:
                return QueuePosition(position=None, scanned=ahead, beyond=True)
            count = min(_POSITION_CHUNK, length - read, limit - ahead)
            # From the tail: the message served first of this list is at index -1.
            chunk = client.lrange(key, -(read + count), -(read + 1))
            for offset, raw in enumerate(reversed(chunk)):
                if needle in raw and message_headers(raw).get("id") == task_id:
                    return QueuePosition(position=ahead + offset + 1, scanned=ahead + offset + 1, beyond=False)
            read += len(chunk)
            ahead += len(chunk)
            if not chunk:
                break
    return QueuePosition(position=None, scanned=ahead, beyond=False)


# --- The broker page and the queue browser ------------------------------------------

#: INFO fields the broker page shows (Redis and Valkey name them the same).
INFO_FIELDS = (
    "redis_version", "valkey_version", "server_name", "uptime_in_seconds", "connected_clients", "blocked_clients",
    "used_memory", "used_memory_human", "used_memory_peak_human", "maxmemory", "maxmemory_human",
    "maxmemory_policy", "evicted_keys", "aof_enabled", "aof_rewrite_in_progress", "aof_last_bgrewrite_status",
    "aof_last_rewrite_time_sec", "aof_last_write_status", "rdb_last_save_time", "rdb_last_bgsave_status",
    "rdb_changes_since_last_save",
)  # fmt: skip


@dataclass(frozen=True)
class ServerStatus:
    """What the broker says about itself, its unacknowledged messages and its queue lists."""

    info: dict
    rdb_save: str | None  # the ``save`` setting (snapshot rules); None when CONFIG is not allowed
    unacked: int
    unacked_index: int
    scheduled: int
    list_lengths: dict[str, dict[int, int]]  # queue -> priority step -> messages


def server_status(queue_names: list[str]) -> ServerStatus:
    """INFO, the ``save`` setting, kombu's unacked hash and index, the scheduled set and every queue list's length.

    Two round trips (CONFIG GET may be refused on a managed Redis: then ``rdb_save`` is None).
    Raises a ``BROKER_ERRORS`` error when the broker cannot be read.
    """
    from redis.exceptions import ResponseError

    from taskcenter.scheduled_set import SCHEDULED_KEY

    with broker_channel() as channel:
        client = channel.client
        keys = {name: priority_lists(channel, name) for name in queue_names}
        pipe = client.pipeline(transaction=False)
        pipe.info()
        pipe.hlen(channel.unacked_key)
        pipe.zcard(channel.unacked_index_key)
        pipe.zcard(SCHEDULED_KEY)
        for lists in keys.values():
            for key in lists.values():
                pipe.llen(key)
        info, unacked, unacked_index, scheduled, *lengths = pipe.execute()
        try:
            save = client.config_get("save").get("save")
        except ResponseError:  # CONFIG disabled or renamed (managed services)
            save = None
    lengths = iter(lengths)
    return ServerStatus(
        info={name: info[name] for name in INFO_FIELDS if name in info},
        rdb_save=_text(save) if save is not None else None,
        unacked=int(unacked),
        unacked_index=int(unacked_index),
        scheduled=int(scheduled),
        list_lengths={name: {step: int(next(lengths)) for step in lists} for name, lists in keys.items()},
    )


def queue_window(name: str, *, offset: int, limit: int) -> dict[int, tuple[int, list[bytes]]]:
    """For each priority step of queue ``name``: its length and the messages ``offset`` to ``offset+limit-1``.

    Counted from the oldest message (the right end of the list, served next); never reads
    more than ``limit`` messages of a list. Raises a ``BROKER_ERRORS`` error.
    """
    with broker_channel() as channel:
        lists = priority_lists(channel, name)
        pipe = channel.client.pipeline(transaction=True)
        for key in lists.values():
            pipe.llen(key)
            # Oldest first: index -1 is the oldest, so offset 0 is -1 and the window runs leftwards.
            pipe.lrange(key, -(offset + limit), -(offset + 1))
        replies = iter(pipe.execute())
    return {step: (int(next(replies)), list(reversed(next(replies)))) for step in lists}


def queue_message_find(name: str, *, step: int, position: int, matches, limit: int) -> bytes | None:
    """The raw message of queue ``name``'s priority ``step`` for which ``matches(raw)`` is true, or None.

    ``position`` is where it was seen, counted from the oldest message. Consumers take the
    oldest messages and new ones are pushed at the other end, so a waiting message's position
    only goes down: one read of at most ``limit`` messages, from a little past ``position``
    towards the oldest, finds it if it is still there. Raises a ``BROKER_ERRORS`` error.
    """
    high = max(0, position) + 10
    low = max(0, high - limit + 1)
    with broker_channel() as channel:
        key = priority_lists(channel, name)[step]
        raws = channel.client.lrange(key, -(high + 1), -(low + 1))
    return next((raw for raw in reversed(raws) if matches(raw)), None)


def queue_message_remove(name: str, *, step: int, raw: bytes) -> bool:
    """Remove one copy of exactly ``raw`` from queue ``name``'s priority ``step``; False when it is gone.

    LREM of the raw payload: a message a consumer took meanwhile is not there to remove, and no
    other message can be removed in its place. Raises a ``BROKER_ERRORS`` error.
    """
    with broker_channel() as channel:
        key = priority_lists(channel, name)[step]
        return bool(channel.client.lrem(key, 1, raw))


def queue_message_put_back(name: str, *, step: int, raw: bytes) -> None:
    """Put a removed message back at the oldest end of its list (served next). Raises a ``BROKER_ERRORS`` error."""
    with broker_channel() as channel:
        channel.client.rpush(priority_lists(channel, name)[step], raw)
