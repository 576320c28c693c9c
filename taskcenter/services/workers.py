"""See and steer the workers online: inspect them, resize or restart pools, autoscale,
choose one worker's queues, set rate limits and time limits.

Every remote call waits at most ``CONTROL_TIMEOUT`` for replies, so a page or an
action answers within about a second even when no worker is online, and a broker
that is down is reported at once. Operator actions go through ``run_audited``,
which writes one audit entry per attempt, whatever its outcome.

Paused queues and rate limits are kept in the database; ``worker_apply_saved_state``
re-applies them to every worker that starts.
"""

import logging
import math
import re
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from celery import current_app
from celery.app.control import flatten_reply
from celery.utils.time import rate as rate_per_second
from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from taskcenter import catalogue
from taskcenter.broker import BROKER_ERRORS, broker_down_message
from taskcenter.models import QueueState, TaskRateLimit
from taskcenter.selectors.monitoring import workers_state
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import InvalidInput, NotFound, ServiceError, TimedOut, Unavailable

logger = logging.getLogger(__name__)

#: Seconds to wait for workers to answer a control or inspect command.
CONTROL_TIMEOUT = 1.0
#: "10/s", "100/m", "1000/h", or a plain number of tasks per second.
RATE_PATTERN = re.compile(r"\d+(\.\d+)?(/[smh])?")
#: Highest rate limit accepted (tasks per second per worker), and the longest text of one.
MAX_RATE_PER_SECOND = 1_000_000
MAX_RATE_CHARS = 20
#: What the workers page asks every worker, all at once.
INSPECTIONS = ("ping", "stats", "active", "reserved", "scheduled", "active_queues", "registered")
#: Arguments of an inspection: ``registered`` lists each task with the limits the worker applies.
INSPECT_ARGUMENTS = {"registered": ("rate_limit", "time_limit", "soft_time_limit")}


class ActionRefused(InvalidInput):
    """The request is invalid (bad input); nothing was changed."""


class UnknownWorker(NotFound):
    """No worker of that name is online."""


class ActionFailed(Unavailable):
    """The broker or the workers did not do what was asked."""


class BrokerDown(ActionFailed):
    """The broker (Redis) is not reachable."""


class NoWorkerReplied(TimedOut, ActionFailed):
    """No worker confirmed within ``CONTROL_TIMEOUT``."""


@dataclass(frozen=True)
class ActionReport:
    """What an action did: a message for the operator and details for the audit trail."""

    message: str
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True)
class ActiveTask:
    id: str
    name: str


@dataclass(frozen=True)
class WorkerInfo:
    """One worker online, as it described itself."""

    hostname: str
    queues: list[str]
    pool_implementation: str
    pool_max_concurrency: int | None
    pool_processes: int | None
    active: list[ActiveTask]
    reserved_count: int
    processed_by_task: dict[str, int]
    rate_limits: dict[str, str] = field(default_factory=dict)  # task name -> the limit this worker applies
    pid: int | None = None
    uptime: int | None = None  # seconds since the worker started
    prefetch_count: int | None = None
    autoscaler: dict | None = None  # {"min", "max", ...} when started with --autoscale
    scheduled_count: int = 0  # runs waiting on the worker for their ETA
    #: Runs the worker ended that way since it came online, as the monitor counted them (None: not known).
    succeeded: int | None = None
    failed: int | None = None
    retried: int | None = None

    @property
    def processed(self) -> int:
        return sum(self.processed_by_task.values())

    @property
    def started_at(self) -> datetime | None:
        """When the worker started, from its uptime (for ``timesince``)."""
        return timezone.now() - timedelta(seconds=self.uptime) if self.uptime is not None else None


@dataclass(frozen=True)
class AppliedRateLimit:
    """A rate limit as the workers online apply it (``celery control rate_limit`` included)."""

    task_name: str
    rate: str
    workers: list[str]


@dataclass(frozen=True)
class WorkersOverview:
    """The workers page: workers online, rate limits saved and applied, and a notice when something is wrong."""

    workers: list[WorkerInfo]
    rate_limits: list[TaskRateLimit]
    problem: str = ""

    @property
    def applied_rate_limits(self) -> list[AppliedRateLimit]:
        """Each (task, rate) pair some worker online applies, with the workers that apply it."""
        hosts: dict[tuple[str, str], list[str]] = {}
        for worker in self.workers:
            for task_name, rate in worker.rate_limits.items():
                hosts.setdefault((task_name, rate), []).append(worker.hostname)
        return [AppliedRateLimit(name, rate, sorted(workers)) for (name, rate), workers in sorted(hosts.items())]


# --- Talking to workers -------------------------------------------------------------


def run_audited(*, actor, action: str, target: str, perform: Callable[[], ActionReport]) -> ActionReport:
    """Call ``perform`` and audit how it ended: its report, or the refusal or failure it raised."""
    try:
        report = perform()
    except ServiceError as exc:
        audit_record(actor=actor, action=action, target=target, outcome=exc.outcome, message=str(exc))
        raise
    except Exception as exc:
        unexpected = _("Unexpected: %(error)r") % {"error": exc}
        audit_record(actor=actor, action=action, target=target, outcome=Outcome.ERROR, message=unexpected)
        raise
    audit_record(actor=actor, action=action, target=target, message=report.message, detail=report.detail)
    return report


def workers_broadcast(command: str, *, destination: list[str] | None = None, note: str = "", **arguments) -> list[str]:
    """Send a control command; return the hostnames that confirmed it.

    Raises ``BrokerDown``, ``NoWorkerReplied`` or ``ActionFailed`` (a worker
    answered with an error); ``note`` is appended to those messages.
    """
    try:
        replies = current_app.control.broadcast(
            command,
            arguments=arguments,
            destination=destination,
            reply=True,
            timeout=CONTROL_TIMEOUT,
            limit=len(destination) if destination else None,
        )
    except BROKER_ERRORS as exc:
        logger.warning("Control command %s not sent: broker unavailable (%s)", command, exc)
        raise BrokerDown(_with_note(broker_down_message(gettext_noop("no worker was told")), note)) from exc
    by_host = flatten_reply(replies or [])
    if not by_host:
        raise NoWorkerReplied(_with_note(no_reply_message(destination), note))
    errors = {host: reply["error"] for host, reply in by_host.items() if "error" in reply}
    if errors:
        details = "; ".join(f"{host}: {error}" for host, error in sorted(errors.items()))
        raise ActionFailed(_with_note(_("Worker error (%(details)s).") % {"details": details}, note))
    return sorted(by_host)


def workers_inspect(*methods: str, destination: list[str] | None = None) -> dict[str, dict[str, Any]]:
    """Ask the workers ``methods`` (e.g. "stats") concurrently; return ``{method: {hostname: reply}}``.

    Takes about ``CONTROL_TIMEOUT`` in all. Raises ``BrokerDown``.
    """

    def ask(method: str) -> dict[str, Any]:
        inspector = current_app.control.inspect(
            destination=destination, timeout=CONTROL_TIMEOUT, limit=len(destination) if destination else None
        )
        return getattr(inspector, method)(*INSPECT_ARGUMENTS.get(method, ())) or {}

    try:
        with ThreadPoolExecutor(max_workers=len(methods), thread_name_prefix="inspect") as executor:
            futures = {method: executor.submit(ask, method) for method in methods}
            return {method: future.result() for method, future in futures.items()}
    except BROKER_ERRORS as exc:
        logger.warning("Inspect %s failed: broker unavailable (%s)", ",".join(methods), exc)
        raise BrokerDown(broker_down_message(gettext_noop("no worker was asked"))) from exc


def no_reply_message(destination: list[str] | None) -> str:
    """The operator's message when the workers asked (all when ``destination`` is None) did not answer."""
    if destination:
        return _("Worker %(names)s did not answer within %(timeout)s s; is it online?") % {
            "names": ", ".join(destination),
            "timeout": f"{CONTROL_TIMEOUT:g}",
        }
    return _("No worker answered within %(timeout)s s; are workers running?") % {"timeout": f"{CONTROL_TIMEOUT:g}"}


def as_user(actor):
    """The actor to store in a user field: None for the system or an anonymous user."""
    return actor if getattr(actor, "pk", None) else None


def _with_note(message: str, note: str) -> str:
    return f"{message} {note}" if note else message


# --- The workers page -------------------------------------------------------------


def workers_overview() -> WorkersOverview:
    """Every worker that answers within a second, with its pool, queues and tasks."""
    rate_limits = rate_limits_list()
    try:
        answers = workers_inspect(*INSPECTIONS)
    except BrokerDown as exc:
        return WorkersOverview(workers=[], rate_limits=rate_limits, problem=str(exc))
    counted = {state.hostname: state for state in workers_state()}
    hostnames = sorted(set().union(*answers.values()))
    workers = [worker_info(hostname, answers, counted.get(hostname)) for hostname in hostnames]
    problem = "" if workers else no_reply_message(None)
    return WorkersOverview(workers=workers, rate_limits=rate_limits, problem=problem)


def worker_info(hostname: str, answers: dict[str, dict[str, Any]], counted=None) -> WorkerInfo:
    """One worker from the inspect ``answers`` (``{method: {hostname: reply}}``) and the monitor's ``WorkerState``."""
    stats = answers.get("stats", {}).get(hostname) or {}
    pool = stats.get("pool") or {}
    return WorkerInfo(
        hostname=hostname,
        queues=sorted(queue["name"] for queue in answers.get("active_queues", {}).get(hostname) or []),
        pool_implementation=str(pool.get("implementation", "?")).rsplit(".", 1)[-1],
        pool_max_concurrency=pool.get("max-concurrency"),
        pool_processes=_process_count(pool),
        active=[
            ActiveTask(id=task["id"], name=task.get("name") or "?")
            for task in answers.get("active", {}).get(hostname) or []
        ],
        reserved_count=len(answers.get("reserved", {}).get(hostname) or []),
        processed_by_task=dict(stats.get("total") or {}),
        rate_limits={
            name: limits["rate_limit"]
            for name, limits in registered_limits(answers.get("registered", {}).get(hostname)).items()
            if "rate_limit" in limits
        },
        pid=_whole(stats.get("pid")),
        uptime=_whole(stats.get("uptime")),
        prefetch_count=_whole(stats.get("prefetch_count")),
        autoscaler=stats.get("autoscaler") if isinstance(stats.get("autoscaler"), dict) else None,
        scheduled_count=len(answers.get("scheduled", {}).get(hostname) or []),
        succeeded=getattr(counted, "succeeded", None),
        failed=getattr(counted, "failed", None),
        retried=getattr(counted, "retried", None),
    )


def registered_limits(registered) -> dict[str, dict[str, str]]:
    """Parse ``inspect registered rate_limit time_limit ...`` lines into ``{task name: {limit: value}}``.

    A line reads e.g. "examples.add [rate_limit=10/s time_limit=None]"; limits that are None are left out,
    and every registered task has an entry.
    """
    tasks: dict[str, dict[str, str]] = {}
    for line in registered if isinstance(registered, list) else []:
        name, _sep, info = str(line).partition(" ")
        limits = tasks.setdefault(name, {})
        for item in info.strip("[]").split():
            key, _sep, value = item.partition("=")
            if value and value != "None":
                limits[key] = value
    return tasks


def _whole(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


# --- One worker (its page) ----------------------------------------------------------
#
# A read, kept here beside ``workers_overview`` because it asks the worker through
# ``workers_inspect`` (selectors import no service). Only that worker is asked (a
# destination, answered as soon as it replies), so an action's result shows on the
# next page at once.

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


# --- Pool size --------------------------------------------------------------------


def worker_pool_grow(*, hostname: str, n: int, actor) -> ActionReport:
    """Add ``n`` processes to the pool of one worker, up to ``TASKCENTER_MAX_POOL_PROCESSES`` in all."""

    def perform() -> ActionReport:
        _require_positive(n)
        size = worker_pool_size(hostname=hostname)
        limit = settings.TASKCENTER_MAX_POOL_PROCESSES
        if size + n > limit:
            raise ActionRefused(
                _(
                    "Worker %(worker)s has %(size)d process(es); growing by %(n)d would exceed the limit of "
                    "%(limit)d processes per worker (TASKCENTER_MAX_POOL_PROCESSES)."
                )
                % {"worker": hostname, "size": size, "n": n, "limit": limit}
            )
        return _pool_resize(hostname=hostname, n=n, command="pool_grow", size=size)

    return run_audited(actor=actor, action=Action.POOL_GROW, target=hostname, perform=perform)


def worker_pool_shrink(*, hostname: str, n: int, actor) -> ActionReport:
    """Remove ``n`` idle processes from the pool of one worker, keeping at least one."""

    def perform() -> ActionReport:
        _require_positive(n)
        size = worker_pool_size(hostname=hostname)
        if size - n < 1:
            raise ActionRefused(
                _("Worker %(worker)s has %(size)d process(es); shrinking by %(n)d would leave none.")
                % {"worker": hostname, "size": size, "n": n}
            )
        return _pool_resize(hostname=hostname, n=n, command="pool_shrink", size=size)

    return run_audited(actor=actor, action=Action.POOL_SHRINK, target=hostname, perform=perform)


def worker_pool_size(*, hostname: str) -> int:
    """The number of pool processes of one worker, as it reports it."""
    stats = workers_inspect("stats", destination=[hostname])["stats"].get(hostname)
    if not stats:
        raise UnknownWorker(
            _("No worker named %(worker)s is online (none answered within %(timeout)s s).")
            % {"worker": hostname, "timeout": f"{CONTROL_TIMEOUT:g}"}
        )
    return _process_count(stats.get("pool") or {}) or 0


def _process_count(pool: dict) -> int | None:
    """Processes running in a pool (prefork); other pools report only their concurrency."""
    processes = pool.get("processes")
    return len(processes) if isinstance(processes, list) else pool.get("max-concurrency")


def _pool_resize(*, hostname: str, n: int, command: str, size: int) -> ActionReport:
    workers_broadcast(command, destination=[hostname], n=n)
    expected = size + n if command == "pool_grow" else size - n
    # Celery starts or removes the processes at its next pool check (every 5 s): ask for it now,
    # and wait briefly for the new size, so the next page shows it.
    _pool_maintain(hostname)
    worker_wait_until(hostname, lambda stats: _process_count(stats.get("pool") or {}) == expected)
    if command == "pool_grow":
        message = _("The pool of %(worker)s grows by %(n)d process(es).")
    else:
        message = _("The pool of %(worker)s shrinks by %(n)d process(es).")
    return ActionReport(message % {"worker": hostname, "n": n}, {"n": n})


def _pool_maintain(hostname: str) -> None:
    """Have the worker start or remove pool processes now, not at its next pool check (every 5 s)."""
    try:
        workers_broadcast("taskcenter_pool_maintain", destination=[hostname])
    except ActionFailed as exc:  # e.g. a worker of an older taskcenter: the change shows within 5 s
        logger.info("Worker %s: pool not maintained on request: %s", hostname, exc)


def _require_positive(n: int) -> None:
    if n < 1:
        raise ActionRefused(_("The number of processes must be at least 1 (got %(n)s).") % {"n": n})


def worker_wait_until(hostname: str, reached: Callable[[dict], bool], *, method: str = "stats") -> bool:
    """Ask one worker ``method`` until ``reached(its reply)``, for at most ``CONTROL_TIMEOUT``; say if it was.

    After an action the worker answers at once but applies some changes a moment later (new pool
    processes, a queue consumed): waiting here lets the next page show the change.
    """
    deadline = time.monotonic() + CONTROL_TIMEOUT
    while True:
        try:
            reply = workers_inspect(method, destination=[hostname])[method].get(hostname)
        except BrokerDown:
            return False
        if reply is not None and reached(reply):
            return True
        if time.monotonic() >= deadline:
            logger.info("Worker %s: change not visible in %s within %s s", hostname, method, CONTROL_TIMEOUT)
            return False
        time.sleep(0.05)


# --- Pool restart and autoscale ----------------------------------------------------


def worker_pool_restart(*, hostname: str, actor) -> ActionReport:
    """Restart the pool of one worker: Celery replaces each process once it is done with its current task.

    No code is reloaded. Celery hands the pool one no-op task, so one process is replaced at once;
    the others are replaced as they take their next task.
    """

    def perform() -> ActionReport:
        if not pool_restarts_enabled():
            raise ActionRefused(
                _("Pool restarts are turned off here (CELERY_WORKER_POOL_RESTARTS); workers refuse them.")
            )
        _require_online(hostname)
        workers_broadcast("pool_restart", destination=[hostname])
        _pool_maintain(hostname)  # replaces at once the process that took Celery's no-op task
        return ActionReport(
            _("The pool of %(worker)s restarts: each process is replaced once it is done with its current task.")
            % {"worker": hostname}
        )

    return run_audited(actor=actor, action=Action.POOL_RESTART, target=hostname, perform=perform)


def pool_restarts_enabled() -> bool:
    """Whether workers of this configuration accept ``pool_restart`` (``CELERY_WORKER_POOL_RESTARTS``)."""
    return bool(current_app.conf.worker_pool_restarts)


def worker_autoscale(*, hostname: str, minimum: int, maximum: int, actor) -> ActionReport:
    """Set the fewest and most pool processes of a worker started with ``--autoscale``."""

    def perform() -> ActionReport:
        limit = settings.TASKCENTER_MAX_POOL_PROCESSES
        if not 1 <= minimum <= maximum:
            raise ActionRefused(
                _("The minimum must be at least 1 and at most the maximum (got %(min)s and %(max)s).")
                % {"min": minimum, "max": maximum}
            )
        if maximum > limit:
            raise ActionRefused(
                _("At most %(limit)s processes per worker (TASKCENTER_MAX_POOL_PROCESSES).") % {"limit": limit}
            )
        stats = _require_online(hostname)
        if not isinstance(stats.get("autoscaler"), dict):
            raise ActionRefused(
                _(
                    "Worker %(worker)s was not started with --autoscale, so it has no minimum and maximum to change; "
                    "use Grow and Shrink instead."
                )
                % {"worker": hostname}
            )
        workers_broadcast("autoscale", destination=[hostname], max=maximum, min=minimum)
        return ActionReport(
            _("Worker %(worker)s now autoscales between %(min)s and %(max)s processes.")
            % {"worker": hostname, "min": minimum, "max": maximum},
            {"min": minimum, "max": maximum},
        )

    return run_audited(actor=actor, action=Action.AUTOSCALE, target=hostname, perform=perform)


def _require_online(hostname: str) -> dict:
    stats = workers_inspect("stats", destination=[hostname])["stats"].get(hostname)
    if not stats:
        raise UnknownWorker(_unknown_worker_message(hostname))
    return stats


def _unknown_worker_message(hostname: str) -> str:
    return _("No worker named %(worker)s is online (none answered within %(seconds)s s).") % {
        "worker": hostname,
        "seconds": f"{CONTROL_TIMEOUT:g}",
    }


# --- One worker's queues -------------------------------------------------------------


def worker_queue_add(*, hostname: str, queue: str, actor) -> ActionReport:
    """Make one worker consume a configured queue too (until it restarts, or the queue is paused)."""

    def perform() -> ActionReport:
        _require_configured_queue(queue)
        if QueueState.objects.filter(name=queue, paused=True).exists():
            raise ActionRefused(_("Queue %(queue)s is paused; resume it on the Queues page first.") % {"queue": queue})
        if queue in worker_queues(hostname=hostname):
            raise ActionRefused(
                _("Worker %(worker)s already consumes %(queue)s.") % {"worker": hostname, "queue": queue}
            )
        workers_broadcast("add_consumer", destination=[hostname], queue=queue)
        worker_wait_until(hostname, lambda queues: queue in _queue_names(queues), method="active_queues")
        return ActionReport(
            _("Worker %(worker)s now consumes %(queue)s too.") % {"worker": hostname, "queue": queue},
            {"queue": queue},
        )

    return run_audited(actor=actor, action=Action.WORKER_QUEUE_ADD, target=hostname, perform=perform)


def worker_queue_cancel(*, hostname: str, queue: str, actor) -> ActionReport:
    """Make one worker stop consuming a queue (until it restarts); its other queues are untouched."""

    def perform() -> ActionReport:
        _require_configured_queue(queue)
        if queue not in worker_queues(hostname=hostname):
            raise ActionRefused(
                _("Worker %(worker)s does not consume %(queue)s.") % {"worker": hostname, "queue": queue}
            )
        workers_broadcast("cancel_consumer", destination=[hostname], queue=queue)
        worker_wait_until(hostname, lambda queues: queue not in _queue_names(queues), method="active_queues")
        return ActionReport(
            _("Worker %(worker)s no longer consumes %(queue)s.") % {"worker": hostname, "queue": queue},
            {"queue": queue},
        )

    return run_audited(actor=actor, action=Action.WORKER_QUEUE_CANCEL, target=hostname, perform=perform)


def worker_queues(*, hostname: str) -> list[str]:
    """The queues one worker consumes now; raises ``UnknownWorker`` when it does not answer."""
    queues = workers_inspect("active_queues", destination=[hostname])["active_queues"].get(hostname)
    if queues is None:
        raise UnknownWorker(_unknown_worker_message(hostname))
    return _queue_names(queues)


def _queue_names(queues) -> list[str]:
    return sorted(queue.get("name", "") for queue in queues if isinstance(queue, dict))


def _require_configured_queue(queue: str) -> None:
    if queue not in settings.TASKCENTER_QUEUES:
        raise ActionRefused(
            _("%(queue)s is not a configured queue (TASKCENTER_QUEUES: %(queues)s).")
            % {"queue": repr(queue[:100]), "queues": ", ".join(settings.TASKCENTER_QUEUES)}
        )


# --- Time limits ------------------------------------------------------------------


def worker_time_limit_set(
    *, hostname: str, task_name: str, soft: float | None, hard: float | None, actor
) -> ActionReport:
    """Set the soft and hard time limits one worker applies to a catalogued task.

    None stands for the default, ``CELERY_TASK_SOFT_TIME_LIMIT`` or ``CELERY_TASK_TIME_LIMIT``.

    Not saved: the worker forgets them when it restarts. A run launched with its own limits keeps them.
    """

    def perform() -> ActionReport:
        if catalogue.get_entry(task_name) is None:
            raise ActionRefused(
                _("%(task)s is not a catalogued task; time limits apply to catalogued tasks only.")
                % {"task": repr(task_name[:200])}
            )
        _validate_time_limits(soft, hard)
        workers_broadcast(
            "time_limit",
            destination=[hostname],
            task_name=task_name,
            soft=settings.CELERY_TASK_SOFT_TIME_LIMIT if soft is None else soft,
            hard=settings.CELERY_TASK_TIME_LIMIT if hard is None else hard,
        )
        if soft is None and hard is None:
            message = _("Worker %(worker)s applies the default time limits to %(task)s again.")
        else:
            message = _("Worker %(worker)s now stops %(task)s after %(soft)s s (soft) and %(hard)s s (hard).")
        default = _("the default")
        return ActionReport(
            message
            % {
                "worker": hostname,
                "task": task_name,
                "soft": f"{soft:g}" if soft is not None else default,
                "hard": f"{hard:g}" if hard is not None else default,
            },
            {"task_name": task_name, "soft": soft, "hard": hard},
        )

    return run_audited(actor=actor, action=Action.TIME_LIMIT, target=hostname, perform=perform)


def time_limit_ceiling() -> float:
    """The longest hard time limit allowed: a longer run would be delivered twice (visibility timeout)."""
    return settings.BROKER_VISIBILITY_TIMEOUT / settings.CELERY_WORKER_PREFETCH_MULTIPLIER


def _validate_time_limits(soft: float | None, hard: float | None) -> None:
    for value in (soft, hard):
        if value is not None and not (math.isfinite(value) and value > 0):
            raise ActionRefused(_("Time limits must be positive numbers of seconds."))
    ceiling = time_limit_ceiling()
    if hard is not None and hard >= ceiling:
        raise ActionRefused(
            _(
                "The hard time limit must be below %(ceiling)s s: a longer run would be delivered twice "
                "(CELERY_VISIBILITY_TIMEOUT divided by CELERY_WORKER_PREFETCH_MULTIPLIER)."
            )
            % {"ceiling": f"{ceiling:g}"}
        )
    effective_hard = hard if hard is not None else settings.CELERY_TASK_TIME_LIMIT
    if soft is not None and soft >= effective_hard:
        raise ActionRefused(
            _("The soft time limit (%(soft)s s) must be below the hard one (%(hard)s s), so the task can clean up.")
            % {"soft": f"{soft:g}", "hard": f"{effective_hard:g}"}
        )


# --- Rate limits -----------------------------------------------------------------


def rate_limit_set(*, task_name: str, rate: str, actor) -> ActionReport:
    """Save a rate limit for a catalogued task (empty ``rate`` removes it) and tell every worker."""

    def perform() -> ActionReport:
        if catalogue.get_entry(task_name) is None:
            raise ActionRefused(
                _("%(task)s is not a catalogued task; rate limits apply to catalogued tasks only.")
                % {"task": repr(task_name)}
            )
        cleaned = _validated_rate(rate)
        _save_rate_limit(task_name=task_name, rate=cleaned, actor=actor)
        saved = _("The limit is saved; workers apply it when they start.")
        names = {"task": task_name, "rate": cleaned}
        try:
            workers = workers_broadcast("rate_limit", note=saved, task_name=task_name, rate_limit=cleaned or None)
        except NoWorkerReplied:
            # Nothing is lost: the saved limit is applied by every worker that starts.
            if cleaned:
                offline = _(
                    "Rate limit of %(task)s set to %(rate)s. No worker is online now; "
                    "the limit is saved; workers apply it when they start."
                )
            else:
                offline = _(
                    "Rate limit of %(task)s removed. No worker is online now; "
                    "the limit is saved; workers apply it when they start."
                )
            return ActionReport(offline % names, {"rate": cleaned})
        if cleaned:
            online = _("Rate limit of %(task)s set to %(rate)s on %(count)d worker(s).")
        else:
            online = _("Rate limit of %(task)s removed on %(count)d worker(s).")
        return ActionReport(online % {**names, "count": len(workers)}, {"rate": cleaned, "workers": workers})

    return run_audited(actor=actor, action=Action.RATE_LIMIT, target=task_name, perform=perform)


def rate_limits_list() -> list[TaskRateLimit]:
    """The saved rate limits, by task name."""
    return list(TaskRateLimit.objects.select_related("changed_by").order_by("task_name"))


def _validated_rate(rate: str) -> str:
    rate = rate.strip()
    if not rate:
        return ""
    if not RATE_PATTERN.fullmatch(rate):
        raise ActionRefused(
            _(
                "Rate limit %(rate)s is not valid; use e.g. 10/s, 100/m or 1000/h, "
                "or leave it empty to remove the limit."
            )
            % {"rate": repr(rate)}
        )
    if len(rate) > MAX_RATE_CHARS or rate_per_second(rate) > MAX_RATE_PER_SECOND:
        raise ActionRefused(
            _("Rate limit %(rate)s is too high; at most %(max)s tasks a second.")
            % {"rate": repr(rate[:20]), "max": f"{MAX_RATE_PER_SECOND:,}"}
        )
    if rate_per_second(rate) == 0:
        raise ActionRefused(_("A rate of 0 means no limit to Celery; leave the field empty to remove the limit."))
    return rate


def _save_rate_limit(*, task_name: str, rate: str, actor) -> None:
    if not rate:
        TaskRateLimit.objects.filter(task_name=task_name).delete()
        return
    TaskRateLimit.objects.update_or_create(task_name=task_name, defaults={"rate": rate, "changed_by": as_user(actor)})


# --- Worker start-up -------------------------------------------------------------


def worker_apply_saved_state(worker) -> None:
    """Apply saved paused queues and rate limits to a worker before it consumes.

    Called from Celery's ``worker_init`` signal with the WorkController: its
    queues are chosen but nothing is consumed yet, so a paused queue is never
    read, not even once. Logs what it applied and never raises.
    """
    for apply in (_apply_paused_queues, _apply_rate_limits):
        try:
            apply(worker)
        except Exception:
            logger.exception("Worker %s: %s failed", getattr(worker, "hostname", "?"), apply.__name__)


#: The queues this worker process was started to consume (its ``-Q``), before paused ones were
#: left out; ``None`` outside a worker. A resume adds a queue back only where it is listed here,
#: so a worker dedicated to other queues never starts consuming it.
queues_chosen_at_start: frozenset[str] | None = None


def worker_was_started_for(queue: str) -> bool:
    """Whether this worker process should consume ``queue`` when it is not paused."""
    return queues_chosen_at_start is None or queue in queues_chosen_at_start


def _apply_paused_queues(worker) -> None:
    global queues_chosen_at_start
    queues = worker.app.amqp.queues
    consumed = set(queues.consume_from or ())
    queues_chosen_at_start = frozenset(consumed)
    paused = sorted(set(QueueState.objects.filter(paused=True).values_list("name", flat=True)) & consumed)
    for name in paused:
        queues.deselect(name)
    logger.info("Worker %s: paused queues not consumed: %s", worker.hostname, ", ".join(paused) or "none")


def _apply_rate_limits(worker) -> None:
    applied = []
    for limit in TaskRateLimit.objects.order_by("task_name"):
        task = worker.app.tasks.get(limit.task_name)
        if task is None:
            logger.warning("Worker %s: saved rate limit for unknown task %s ignored", worker.hostname, limit.task_name)
            continue
        task.rate_limit = limit.rate  # read when the consumer builds its rate-limit buckets
        applied.append(f"{limit.task_name}={limit.rate}")
    logger.info("Worker %s: saved rate limits applied: %s", worker.hostname, ", ".join(applied) or "none")
