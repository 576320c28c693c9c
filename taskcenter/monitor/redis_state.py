"""What the monitor keeps in Redis (the broker): worker states, liveness keys, its lock.

``taskcenter:monitor:workers`` is a hash, field = worker hostname, value = JSON
``{hostname, online, last_heartbeat, active, processed, loadavg, freq}``;
``last_event``, ``started`` and ``tick`` hold Unix times (the last event
processed, when the monitor started, its last flush). ``lock`` names the one
monitor allowed to count, so two monitors never overwrite each other's minutes.
"""

import json
import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager

from kombu.exceptions import KombuError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

KEY_PREFIX = "taskcenter:monitor:"
WORKERS_KEY = KEY_PREFIX + "workers"
LAST_EVENT_KEY = KEY_PREFIX + "last_event"
STARTED_KEY = KEY_PREFIX + "started"
TICK_KEY = KEY_PREFIX + "tick"
LOCK_KEY = KEY_PREFIX + "lock"
#: Errors of a broker that cannot be reached or fails.
REDIS_ERRORS = (KombuError, RedisError, OSError)
#: A worker is online while its last heartbeat is younger than max(3 * freq, this) seconds.
MIN_ONLINE_SECONDS = 10.0
#: Worker entries whose last heartbeat is older than this are removed from the hash.
FORGET_WORKER_SECONDS = 24 * 3600

# Take the lock when it is free or ours (renewing it); 0 when another monitor holds it.
_HOLD_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if (not holder) or holder == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def online_window(freq) -> float:
    """Seconds after its last heartbeat during which a worker counts as online."""
    try:
        freq = float(freq)
    except (TypeError, ValueError):
        freq = 2.0
    return max(3 * freq, MIN_ONLINE_SECONDS)


def is_online(state: dict, now: float | None = None) -> bool:
    """Whether a worker state (as stored) means the worker is online at ``now``."""
    heartbeat = state.get("last_heartbeat")
    if not state.get("online") or not isinstance(heartbeat, int | float):
        return False
    now = time.time() if now is None else now
    return now - heartbeat < online_window(state.get("freq"))


def decode_workers(raw: dict) -> list[dict]:
    """Worker states from the hash as HGETALL returns it; unreadable entries are skipped."""
    states = []
    for field, value in raw.items():
        try:
            state = json.loads(value)
        except (TypeError, ValueError):
            logger.warning("Unreadable worker state of %r in %s", field, WORKERS_KEY)
            continue
        if isinstance(state, dict):
            state.setdefault("hostname", field.decode() if isinstance(field, bytes) else field)
            states.append(state)
    return states


def as_float(raw) -> float | None:
    try:
        return float(raw)
    except (TypeError, ValueError):
        return None


@contextmanager
def broker_client(app=None, *, timeout: float = 2.0) -> Iterator:
    """A Redis client of the broker, connected within ``timeout`` seconds; raises a ``REDIS_ERRORS`` error."""
    if app is None:
        from celery import current_app as app
    connection = app.connection_for_write()
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        yield connection.default_channel.client
    finally:
        connection.release()


class MonitorRedis:
    """The monitor process's writes to Redis, over one connection kept open.

    Every method raises a ``REDIS_ERRORS`` error when the broker does not answer;
    the connection is then dropped and made again on the next call.
    """

    def __init__(self, app, *, identity: str, lock_seconds: float = 30.0):
        self.app = app
        self.identity = identity
        self.lock_seconds = lock_seconds
        self._connection = None
        self._client = None
        self._hold = None
        self._release = None

    def _redis(self):
        if self._client is None:
            connection = self.app.connection_for_write()
            try:
                connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=2)
                client = connection.default_channel.client
            except BaseException:
                connection.release()
                raise
            self._connection, self._client = connection, client
            self._hold = client.register_script(_HOLD_SCRIPT)
            self._release = client.register_script(_RELEASE_SCRIPT)
        return self._client

    def disconnect(self) -> None:
        connection, self._connection, self._client = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except REDIS_ERRORS:
                pass

    @contextmanager
    def _calls(self) -> Iterator:
        try:
            yield self._redis()
        except REDIS_ERRORS:
            self.disconnect()
            raise

    def hold_lock(self) -> bool:
        """Take or renew the single-monitor lock; False when another monitor holds it."""
        with self._calls() as client:
            return bool(self._hold(keys=[LOCK_KEY], args=[self.identity, int(self.lock_seconds * 1000)], client=client))

    def lock_holder(self) -> str:
        with self._calls() as client:
            holder = client.get(LOCK_KEY)
        return holder.decode() if isinstance(holder, bytes) else (holder or "")

    def release_lock(self) -> None:
        """Give the lock up (if still ours) and remove the tick, so pages see at once that no monitor runs."""
        with self._calls() as client:
            if self._release(keys=[LOCK_KEY], args=[self.identity], client=client):
                client.delete(TICK_KEY)

    def write(
        self,
        *,
        workers: dict[str, dict] | None = None,
        last_event: float | None = None,
        tick: float | None = None,
        started: float | None = None,
    ) -> None:
        """Write worker states and liveness keys in one pipeline (one round trip)."""
        with self._calls() as client:
            pipe = client.pipeline(transaction=False)
            if workers:
                pipe.hset(WORKERS_KEY, mapping={host: json.dumps(state) for host, state in workers.items()})
            if last_event is not None:
                pipe.set(LAST_EVENT_KEY, repr(last_event))
            if tick is not None:
                pipe.set(TICK_KEY, repr(tick))
            if started is not None:
                pipe.set(STARTED_KEY, repr(started))
            if len(pipe):
                pipe.execute()

    def read_workers(self) -> list[dict]:
        with self._calls() as client:
            return decode_workers(client.hgetall(WORKERS_KEY))

    def forget_old_workers(self, now: float | None = None) -> list[str]:
        """Remove worker entries not heard of for ``FORGET_WORKER_SECONDS``; return their hostnames."""
        now = time.time() if now is None else now
        with self._calls() as client:
            states = decode_workers(client.hgetall(WORKERS_KEY))
            old = [
                s["hostname"]
                for s in states
                if not isinstance(s.get("last_heartbeat"), int | float)
                or now - s["last_heartbeat"] > FORGET_WORKER_SECONDS
            ]
            if old:
                client.hdel(WORKERS_KEY, *old)
        return old
