"""What the monitor keeps in Redis (the broker): worker states, liveness keys, its lock.

``taskcenter:monitor:workers`` is a hash, field = worker hostname, value = JSON
``{hostname, online, last_heartbeat, active, processed, loadavg, freq, succeeded, failed, retried}``;
``last_event``, ``started`` and ``tick`` hold Unix times (the last event
processed, when the monitor started, its last flush). ``lock`` names the one
monitor allowed to count, so two monitors never overwrite each other's minutes.
"""

import json
import logging
import time

from taskcenter.broker import BrokerLock, KeptOpenConnection

logger = logging.getLogger(__name__)

KEY_PREFIX = "taskcenter:monitor:"
WORKERS_KEY = KEY_PREFIX + "workers"
LAST_EVENT_KEY = KEY_PREFIX + "last_event"
STARTED_KEY = KEY_PREFIX + "started"
TICK_KEY = KEY_PREFIX + "tick"
LOCK_KEY = KEY_PREFIX + "lock"
#: A worker is online while its last heartbeat is younger than max(3 * freq, this) seconds.
MIN_ONLINE_SECONDS = 10.0
#: Worker entries whose last heartbeat is older than this are removed from the hash.
FORGET_WORKER_SECONDS = 24 * 3600


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


class MonitorRedis:
    """The monitor process's writes to Redis, over one connection kept open.

    Every method raises a ``taskcenter.broker.BROKER_ERRORS`` error when the broker does not answer;
    the connection is then dropped and made again on the next call.
    """

    def __init__(self, app, *, identity: str, lock_seconds: float = 30.0):
        self.app = app
        self.identity = identity
        self.lock_seconds = lock_seconds
        self.connection = KeptOpenConnection(app)
        self.lock = BrokerLock(LOCK_KEY, identity=identity, seconds=lock_seconds, connection=self.connection)

    def disconnect(self) -> None:
        self.connection.disconnect()

    def _calls(self):
        return self.connection.calls()

    def hold_lock(self) -> bool:
        """Take or renew the single-monitor lock; False when another monitor holds it."""
        return self.lock.hold()

    def lock_holder(self) -> str:
        return self.lock.holder()

    def release_lock(self) -> None:
        """Give the lock up (if still ours) and remove the tick, so pages see at once that no monitor runs."""
        self.lock.release(also_delete=(TICK_KEY,))

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
