"""Which beat process sends the schedules, and whether it is alive.

Several ``celery beat`` processes may run (one per host, for failover); only the
one holding the leader lock in Redis sends due tasks (see
``taskcenter.scheduler.TaskcenterScheduler``). The keys, all in the broker:

- ``taskcenter:beat:leader``: the id (``hostname:pid:uuid``) of the leading beat,
  with an expiry of ``lock_seconds()``, renewed by the leader every
  ``min(lock_seconds() / 3, max_interval)`` seconds;
- ``taskcenter:beat:last_tick``: JSON ``{"id", "hostname", "pid", "time", "max_interval"}``
  written by the leader at each renewal (``time`` in Unix seconds, the leader's clock);
- ``taskcenter:beat:standby:<id>``: the same JSON for each beat waiting as standby,
  expiring after ``lock_seconds()`` unless the standby refreshes it.

The lock is taken, renewed and given up by Lua scripts, so checking who holds it
and acting on the answer is one atomic step.
"""

import json
import logging
import os
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from celery import current_app
from django.conf import settings
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

logger = logging.getLogger(__name__)

KEY_PREFIX = "taskcenter:beat:"
LEADER_KEY = KEY_PREFIX + "leader"
LAST_TICK_KEY = KEY_PREFIX + "last_tick"
STANDBY_PREFIX = KEY_PREFIX + "standby:"

#: Seconds the leader lock lasts without renewal (a dead leader is replaced after this).
#: A beat is healthy while its last tick is younger than this many max intervals.
HEALTHY_TICKS = 3
#: Max interval assumed when the leader did not record its own.
DEFAULT_MAX_INTERVAL = 5.0

#: Errors of an unreachable or failing broker.
REDIS_ERRORS = (KombuError, RedisError, OSError)

# KEYS: leader, last_tick, standby key of this beat. ARGV: id, lock ms, heartbeat JSON.
# Returns {2, id} when the lock was taken, {1, id} when renewed, {0, holder} otherwise.
_TICK_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
local status = 0
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  status = 2
elseif holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  status = 1
end
if status > 0 then
  redis.call('SET', KEYS[2], ARGV[3])
  redis.call('DEL', KEYS[3])
  return {status, ARGV[1]}
end
redis.call('SET', KEYS[3], ARGV[3], 'PX', ARGV[2])
return {0, holder}
"""

# KEYS: leader, standby key of this beat. ARGV: id. Returns 1 if the lock was released.
_RELEASE_SCRIPT = """
redis.call('DEL', KEYS[2])
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

ACQUIRED, RENEWED, STANDBY = 2, 1, 0


def lock_seconds() -> float:
    """Expiry of the leader lock (``TASKCENTER_BEAT_LOCK_SECONDS``), read at each call."""
    return float(settings.TASKCENTER_BEAT_LOCK_SECONDS)


@dataclass(frozen=True)
class BeatIdentity:
    id: str
    hostname: str
    pid: int

    @classmethod
    def of_this_process(cls) -> "BeatIdentity":
        hostname, pid = socket.gethostname(), os.getpid()
        return cls(id=f"{hostname}:{pid}:{uuid.uuid4().hex[:12]}", hostname=hostname, pid=pid)

    def payload(self, *, max_interval: float) -> str:
        return json.dumps(
            {
                "id": self.id,
                "hostname": self.hostname,
                "pid": self.pid,
                "time": time.time(),
                "max_interval": max_interval,
            }
        )


class BeatLock:
    """The leader lock as seen by one beat process, over one broker connection kept open."""

    def __init__(self, app, identity: BeatIdentity):
        self.app = app
        self.identity = identity
        self._connection = None
        self._client = None
        self._tick_script = None
        self._release_script = None

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
            self._tick_script = client.register_script(_TICK_SCRIPT)
            self._release_script = client.register_script(_RELEASE_SCRIPT)
        return self._client

    def disconnect(self) -> None:
        connection, self._connection, self._client = self._connection, None, None
        if connection is not None:
            try:
                connection.release()
            except REDIS_ERRORS:
                pass

    def tick(self, *, max_interval: float) -> tuple[int, str]:
        """Take or renew the lock if free or ours; else refresh our standby entry.

        Returns ``(ACQUIRED | RENEWED | STANDBY, holder id)``. Raises a ``REDIS_ERRORS``
        error when the broker does not answer (the connection is then dropped).
        """
        try:
            client = self._redis()
            status, holder = self._tick_script(
                keys=[LEADER_KEY, LAST_TICK_KEY, STANDBY_PREFIX + self.identity.id],
                args=[self.identity.id, int(lock_seconds() * 1000), self.identity.payload(max_interval=max_interval)],
                client=client,
            )
        except REDIS_ERRORS:
            self.disconnect()
            raise
        return int(status), _text(holder)

    def release(self) -> bool:
        """Give the lock up if we hold it and remove our standby entry; never raises."""
        if self._client is None:
            return False
        try:
            released = self._release_script(
                keys=[LEADER_KEY, STANDBY_PREFIX + self.identity.id], args=[self.identity.id], client=self._client
            )
        except REDIS_ERRORS:
            logger.warning("beat %s: could not release the leader lock (broker unreachable)", self.identity.id)
            return False
        finally:
            self.disconnect()
        return bool(released)


def beat_status(*, timeout: float = 2.0) -> dict:
    """Who leads beat, when it last ticked, which beats stand by; never raises for a broker outage.

    Returns a dict with ``state`` ("ok", "stale": the leader stopped ticking, "no_leader",
    or "unknown": the broker is unreachable), ``healthy`` (a leader ticked within
    ``HEALTHY_TICKS`` max intervals), ``reachable``, ``message``, ``leader`` (``{"id",
    "hostname", "pid"}`` or None), ``last_tick`` (aware datetime or None), ``last_tick_age``
    (seconds or None), ``max_interval``, ``standbys`` (list of ``{"id", "hostname", "pid",
    "seen", "age"}``) and ``lock_seconds``.
    """
    status = {
        "state": "unknown",
        "healthy": False,
        "reachable": False,
        "message": "",
        "leader": None,
        "last_tick": None,
        "last_tick_age": None,
        "max_interval": None,
        "standbys": [],
        "lock_seconds": lock_seconds(),
    }
    connection = current_app.connection_for_write()
    try:
        connection.ensure_connection(max_retries=1, interval_start=0, interval_step=0, timeout=timeout)
        client = connection.default_channel.client
        holder, last_tick = client.mget([LEADER_KEY, LAST_TICK_KEY])
        standby_keys = sorted(_text(key) for key in client.scan_iter(match=STANDBY_PREFIX + "*", count=100))
        standbys = client.mget(standby_keys) if standby_keys else []
    except REDIS_ERRORS as exc:
        status["message"] = f"Status unknown: broker unreachable ({exc})."
        return status
    finally:
        connection.release()

    now = time.time()
    status["reachable"] = True
    tick = _json(last_tick)
    holder = _text(holder)
    if tick is not None:
        status["last_tick"] = datetime.fromtimestamp(tick["time"], UTC)
        status["last_tick_age"] = round(max(0.0, now - tick["time"]), 3)
        status["max_interval"] = tick.get("max_interval")
    if holder:
        if tick is not None and tick.get("id") == holder:
            status["leader"] = {"id": holder, "hostname": tick.get("hostname"), "pid": tick.get("pid")}
        else:
            status["leader"] = _parse_id(holder)
    for raw in standbys:
        entry = _json(raw)
        if entry is not None and entry.get("id") != holder:
            status["standbys"].append(
                {
                    "id": entry.get("id"),
                    "hostname": entry.get("hostname"),
                    "pid": entry.get("pid"),
                    "seen": datetime.fromtimestamp(entry["time"], UTC),
                    "age": round(max(0.0, now - entry["time"]), 3),
                }
            )

    limit = HEALTHY_TICKS * max(1.0, float(status["max_interval"] or DEFAULT_MAX_INTERVAL))
    fresh = status["last_tick_age"] is not None and status["last_tick_age"] < limit
    if not holder:
        status["state"] = "no_leader"
        status["message"] = "No beat holds the leader lock: no schedule is being sent."
    elif fresh and tick.get("id") == holder:
        status["state"], status["healthy"] = "ok", True
        status["message"] = f"Beat {holder} leads; last tick {status['last_tick_age']:.1f}s ago."
    else:
        status["state"] = "stale"
        age = "never" if status["last_tick_age"] is None else f"{status['last_tick_age']:.1f}s ago"
        status["message"] = f"Beat {holder} holds the lock but its last tick was {age} (limit {limit:.0f}s)."
    return status


def _text(value) -> str:
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def _json(raw) -> dict | None:
    if not raw:
        return None
    try:
        value = json.loads(_text(raw))
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("time"), int | float):
        return None
    return value


def _parse_id(beat_id: str) -> dict:
    hostname, pid, _ = ([*beat_id.rsplit(":", 2), "", ""])[:3]
    if not pid.isdigit():
        return {"id": beat_id, "hostname": None, "pid": None}
    return {"id": beat_id, "hostname": hostname, "pid": int(pid)}
