"""Which beat process sends the schedules, and whether it is alive: what the pages read.

Several ``celery beat`` processes may run (one per host, for failover); only the
one holding the leader lock in Redis sends due tasks (the lock is
``taskcenter.services.beat.BeatLock``, used by ``taskcenter.scheduler.TaskcenterScheduler``).
The keys, all in the broker:

- ``taskcenter:beat:leader``: the id (``hostname:pid:uuid``) of the leading beat,
  with an expiry of ``lock_seconds()``, renewed by the leader every
  ``min(lock_seconds() / 3, max_interval)`` seconds;
- ``taskcenter:beat:last_tick``: JSON ``{"id", "hostname", "pid", "time", "max_interval"}``
  written by the leader at each renewal (``time`` in Unix seconds, the leader's clock);
- ``taskcenter:beat:standby:<id>``: the same JSON for each beat waiting as standby,
  expiring after ``lock_seconds()`` unless the standby refreshes it.
"""

import json
import time
from datetime import UTC, datetime

from django.conf import settings
from django.utils.translation import gettext

from taskcenter.broker import BROKER_ERRORS, broker_client

KEY_PREFIX = "taskcenter:beat:"
LEADER_KEY = KEY_PREFIX + "leader"
LAST_TICK_KEY = KEY_PREFIX + "last_tick"
STANDBY_PREFIX = KEY_PREFIX + "standby:"

#: A beat is healthy while its last tick is younger than this many max intervals.
HEALTHY_TICKS = 3
#: Max interval assumed when the leader did not record its own.
DEFAULT_MAX_INTERVAL = 5.0


def lock_seconds() -> float:
    """Expiry of the leader lock (``TASKCENTER_BEAT_LOCK_SECONDS``), read at each call."""
    return float(settings.TASKCENTER_BEAT_LOCK_SECONDS)


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
    try:
        with broker_client(timeout=timeout) as client:
            holder, last_tick = client.mget([LEADER_KEY, LAST_TICK_KEY])
            standby_keys = sorted(decoded(key) for key in client.scan_iter(match=STANDBY_PREFIX + "*", count=100))
            standbys = client.mget(standby_keys) if standby_keys else []
    except BROKER_ERRORS as exc:
        status["message"] = gettext("Status unknown: broker unreachable (%(error)s).") % {"error": exc}
        return status

    now = time.time()
    status["reachable"] = True
    tick = _json(last_tick)
    holder = decoded(holder)
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
        status["message"] = gettext("No beat holds the leader lock: no schedule is being sent.")
    elif fresh and tick.get("id") == holder:
        status["state"], status["healthy"] = "ok", True
        status["message"] = gettext("Beat %(holder)s leads; last tick %(age)ss ago.") % {
            "holder": holder,
            "age": f"{status['last_tick_age']:.1f}",
        }
    else:
        status["state"] = "stale"
        if status["last_tick_age"] is None:
            said = gettext("Beat %(holder)s holds the lock but never ticked (limit %(limit)ss).")
        else:
            said = gettext("Beat %(holder)s holds the lock but its last tick was %(age)ss ago (limit %(limit)ss).")
        status["message"] = said % {
            "holder": holder,
            "age": f"{status['last_tick_age'] or 0:.1f}",
            "limit": f"{limit:.0f}",
        }
    return status


def decoded(value) -> str:
    """A Redis reply as text ('' for None)."""
    if isinstance(value, bytes):
        return value.decode()
    return "" if value is None else str(value)


def _json(raw) -> dict | None:
    if not raw:
        return None
    try:
        value = json.loads(decoded(raw))
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
