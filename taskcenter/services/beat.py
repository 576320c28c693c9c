"""The leader lock of beat: which ``celery beat`` process sends the schedules.

Several ``celery beat`` processes may run (one per host, for failover); only the
one holding the leader lock in Redis sends due tasks (see
``taskcenter.scheduler.TaskcenterScheduler``). The keys are described in
``taskcenter.selectors.beat``, which reads them (``beat_status()``).

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

from taskcenter.broker import BROKER_ERRORS, KeptOpenConnection
from taskcenter.selectors.beat import LAST_TICK_KEY, LEADER_KEY, STANDBY_PREFIX, decoded, lock_seconds

__all__ = ["ACQUIRED", "RENEWED", "STANDBY", "BeatIdentity", "BeatLock", "lock_seconds"]

logger = logging.getLogger(__name__)

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
    """The leader lock as seen by one beat process, over one broker connection kept open.

    The lock also writes the heartbeat and the standby entries, in the same Lua
    script, so it runs its own scripts on a ``KeptOpenConnection`` rather than a
    plain ``BrokerLock``.
    """

    def __init__(self, app, identity: BeatIdentity):
        self.app = app
        self.identity = identity
        self.connection = KeptOpenConnection(app, scripts={"tick": _TICK_SCRIPT, "release": _RELEASE_SCRIPT})

    def disconnect(self) -> None:
        self.connection.disconnect()

    def tick(self, *, max_interval: float) -> tuple[int, str]:
        """Take or renew the lock if free or ours; else refresh our standby entry.

        Returns ``(ACQUIRED | RENEWED | STANDBY, holder id)``. Raises a ``BROKER_ERRORS``
        error when the broker does not answer (the connection is then dropped).
        """
        status, holder = self.connection.run_script(
            "tick",
            keys=[LEADER_KEY, LAST_TICK_KEY, STANDBY_PREFIX + self.identity.id],
            args=[self.identity.id, int(lock_seconds() * 1000), self.identity.payload(max_interval=max_interval)],
        )
        return int(status), decoded(holder)

    def release(self) -> bool:
        """Give the lock up if we hold it and remove our standby entry; never raises."""
        if not self.connection.connected:
            return False
        try:
            released = self.connection.run_script(
                "release", keys=[LEADER_KEY, STANDBY_PREFIX + self.identity.id], args=[self.identity.id]
            )
        except BROKER_ERRORS:
            logger.warning("beat %s: could not release the leader lock (broker unreachable)", self.identity.id)
            return False
        finally:
            self.disconnect()
        return bool(released)
