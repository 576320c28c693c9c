"""One worker in detail, for its page: its pool, queues, the tasks it holds and the tasks it knows.

Asks only that worker (a destination, answered as soon as it replies), so an action's
result shows on the next page at once; every call is bounded by ``CONTROL_TIMEOUT``
and a broker that is down gives a notice, never an exception.
"""

from dataclasses import dataclass, field
from datetime import datetime

from django.utils.dateparse import parse_datetime

from taskcenter import catalogue
from taskcenter.selectors.monitoring import workers_state
from taskcenter.services.workers import (
    BrokerDown,
    WorkerInfo,
    no_reply_message,
    registered_limits,
    worker_info,
    workers_inspect,
)

#: What the worker page asks its worker, all at once.
DETAIL_INSPECTIONS = ("stats", "active", "reserved", "scheduled", "revoked", "active_queues", "registered")
#: Most revoked ids listed (a worker keeps up to 50,000); the count is always shown.
REVOKED_SHOWN = 100


@dataclass(frozen=True)
class HeldTask:
    """A task a worker holds without running it: reserved, or waiting for its ETA."""

    id: str
    name: str
    eta: datetime | None = None


@dataclass(frozen=True)
class RegisteredTask:
    name: str
    catalogued: bool
    rate_limit: str = ""
    soft_time_limit: str = ""
    time_limit: str = ""


@dataclass(frozen=True)
class WorkerDetail:
    """One worker as it describes itself; ``info`` is None when it did not answer (``problem`` says why)."""

    hostname: str
    info: WorkerInfo | None = None
    reserved: list[HeldTask] = field(default_factory=list)
    scheduled: list[HeldTask] = field(default_factory=list)
    revoked: list[str] = field(default_factory=list)
    revoked_count: int = 0
    registered: list[RegisteredTask] = field(default_factory=list)
    pool: dict = field(default_factory=dict)
    problem: str = ""
    online: bool = False
    broker_down: bool = False

    @property
    def max_tasks_per_child(self):
        """Tasks after which a pool process is replaced, as the pool reports it ("N/A": never)."""
        return self.pool.get("max-tasks-per-child", "?")


def worker_detail(*, hostname: str) -> WorkerDetail:
    """Everything one worker tells about itself; ``online`` is False when it (or the broker) did not answer."""
    try:
        answers = workers_inspect(*DETAIL_INSPECTIONS, destination=[hostname])
    except BrokerDown as exc:
        return WorkerDetail(hostname=hostname, problem=str(exc), broker_down=True)
    if not any(hostname in replies for replies in answers.values()):
        return WorkerDetail(hostname=hostname, problem=no_reply_message([hostname]))
    counted = next((state for state in workers_state() if state.hostname == hostname), None)
    stats = answers["stats"].get(hostname) or {}
    revoked = answers["revoked"].get(hostname)
    revoked = [str(task_id) for task_id in revoked] if isinstance(revoked, list) else []
    return WorkerDetail(
        hostname=hostname,
        info=worker_info(hostname, answers, counted),
        reserved=[_held(request) for request in answers["reserved"].get(hostname) or []],
        scheduled=[
            _held(entry.get("request") or {}, eta=entry.get("eta"))
            for entry in answers["scheduled"].get(hostname) or []
            if isinstance(entry, dict)
        ],
        revoked=sorted(revoked)[:REVOKED_SHOWN],
        revoked_count=len(revoked),
        registered=[
            RegisteredTask(
                name=name,
                catalogued=catalogue.get_entry(name) is not None,
                rate_limit=limits.get("rate_limit", ""),
                soft_time_limit=limits.get("soft_time_limit", ""),
                time_limit=limits.get("time_limit", ""),
            )
            for name, limits in sorted(registered_limits(answers["registered"].get(hostname)).items())
        ],
        pool=stats.get("pool") if isinstance(stats.get("pool"), dict) else {},
        online=True,
    )


def _held(request, *, eta=None) -> HeldTask:
    request = request if isinstance(request, dict) else {}
    moment = parse_datetime(eta) if isinstance(eta, str) else None
    return HeldTask(id=str(request.get("id") or "?"), name=str(request.get("name") or "?"), eta=moment)
