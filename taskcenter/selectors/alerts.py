"""What is wrong right now: the alerts page, the readiness checks and the metrics read from here.

``current_alerts()`` gathers a ``Snapshot`` (bounded reads: the minute table for
the last 5 minutes, Redis for queues, workers, beat and the monitor, one bounded
query for stuck runs) and ``evaluate()`` compares it with the
``TASKCENTER_ALERT_*`` thresholds. The alert names are those of the Prometheus
rules in ``deploy/prometheus/alerts.yml``, which use the same default thresholds.

Live queue figures come from the broker, counted over every priority list of a
queue, the same way as the queues page, without asking the workers anything.
"""

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, connections
from django.utils import timezone, translation
from django.utils.translation import gettext, gettext_lazy, gettext_noop

from taskcenter import broker
from taskcenter.selectors.health import CheckResult, check_broker, check_database

logger = logging.getLogger(__name__)

#: Window of the failure-rate alert (the Prometheus rule uses the same 5 minutes).
FAILURE_WINDOW = timedelta(minutes=5)
#: Window of the dead-letters alert (the Prometheus rule uses the same 10 minutes).
DEAD_LETTER_WINDOW = timedelta(minutes=10)
#: Seconds without a flush after which the monitor counts as down.
MONITOR_MAX_AGE = 30
#: Most stuck runs read at once; counts at this size are shown as "N+".
STUCK_LIMIT = 100
#: Most new failure groups (and task types failing too often) alerted on at once.
PER_ITEM_LIMIT = 20

CRITICAL = "critical"
WARNING = "warning"


@dataclass(frozen=True)
class Alert:
    name: str
    severity: str
    message: str
    value: float | None
    threshold: float | None


@dataclass(frozen=True)
class Threshold:
    """One alert threshold as shown on the alerts page."""

    alert: str
    setting: str
    value: float | None
    meaning: str


@dataclass(frozen=True)
class LiveQueue:
    """Waiting messages of one queue (all priority lists) and the age of the oldest; None when unknown."""

    name: str
    depth: int | None
    oldest_age: float | None


@dataclass(frozen=True)
class LiveQueues:
    queues: list[LiveQueue]
    problem: str = ""

    @property
    def reachable(self) -> bool:
        return not self.problem


@dataclass(frozen=True)
class BeatSummary:
    """The active beat, normalised from ``selectors.beat.beat_status()`` (absent keys are None)."""

    available: bool
    reachable: bool
    leader: dict | None
    last_tick: float | None  # Unix seconds
    last_tick_age: float | None  # seconds
    standbys: int
    message: str

    def ticking(self, stale_after: float) -> bool:
        return self.leader is not None and self.last_tick_age is not None and self.last_tick_age < stale_after


@dataclass(frozen=True)
class Snapshot:
    """Everything the alerts are computed from."""

    failed: int
    finished: int
    failure_rate: float | None
    queues: LiveQueues
    workers_online: int
    beat: BeatSummary
    stuck_runs: int
    monitor_alive: bool
    taken_at: datetime = field(default_factory=timezone.now)
    schedules_in_error: list = field(default_factory=list)  # (name, error) that beat could not evaluate or send
    dead_letters_recent: int = 0  # unresolved dead letters that arrived within DEAD_LETTER_WINDOW
    task_failures: list = field(default_factory=list)  # TaskFailures of each task type over FAILURE_WINDOW
    new_failure_groups: list = field(default_factory=list)  # FailureGroups first seen within the setting's minutes


@dataclass(frozen=True)
class TaskFailures:
    """Finished and failed runs of one task type over ``FAILURE_WINDOW`` (from the minute table)."""

    task_name: str
    failed: int
    finished: int

    @property
    def rate(self) -> float | None:
        return self.failed / self.finished if self.finished else None


# --- Reading the current state -------------------------------------------------------


def live_queues() -> LiveQueues:
    """Depth and oldest-message age of every configured queue, read from the broker in one round trip."""
    names = list(settings.TASKCENTER_QUEUES)
    try:
        backlogs = broker.queue_backlogs(names)
    except broker.BROKER_ERRORS as exc:
        logger.warning("Queues not read, broker unreachable: %s", exc)
        problem = broker.broker_down_message(gettext_noop("the queues could not be read"))
        return LiveQueues([LiveQueue(name, None, None) for name in names], problem=problem)
    ages = broker.oldest_ages(backlogs)
    return LiveQueues(
        [LiveQueue(name, backlogs[name].depth, ages.get(name) if backlogs[name].depth else None) for name in names]
    )


def beat_summary(*, timeout: float = 2.0) -> BeatSummary:
    """The active beat and its last tick; never raises."""
    try:
        from taskcenter.selectors.beat import beat_status
    except ImportError:
        return BeatSummary(False, False, None, None, None, 0, gettext("Beat status is not available in this version."))
    try:
        status = beat_status(timeout=timeout)
    except Exception as exc:  # a status page must not fail because of it
        logger.warning("Beat status could not be read: %s", exc)
        return BeatSummary(
            True, False, None, None, None, 0, gettext("Beat status could not be read: %(error)s") % {"error": exc}
        )
    status = status if isinstance(status, dict) else {}
    leader = status.get("leader") if isinstance(status.get("leader"), dict) else None
    last_tick = _unix(status.get("last_tick"))
    age = status.get("last_tick_age")
    if not isinstance(age, int | float) and last_tick is not None:
        age = max(0.0, time.time() - last_tick)
    return BeatSummary(
        available=True,
        reachable=bool(status.get("reachable", True)),
        leader=leader,
        last_tick=last_tick,
        last_tick_age=float(age) if isinstance(age, int | float) else None,
        standbys=len(status.get("standbys") or []),
        message=str(status.get("message") or ""),
    )


def _unix(value) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def stuck_run_list(limit: int = STUCK_LIMIT) -> list:
    from taskcenter.selectors import monitoring

    return list(monitoring.stuck_runs(limit=limit))


@dataclass(frozen=True)
class LiveState:
    """What Redis says now (queues, workers, beat, monitor) and the stuck runs; ``problem`` when Redis is down."""

    queues: LiveQueues
    workers: list
    beat: BeatSummary
    stuck: list | None  # None: could not be read
    monitor_alive: bool

    @property
    def problem(self) -> str:
        return self.queues.problem

    @property
    def workers_online(self) -> int:
        return sum(1 for worker in self.workers if worker.online)


def broker_problem(*, timeout: float | None = None) -> str:
    """An empty string when the broker answers a ping within ``timeout`` s (one request timeout), else a message."""
    result = check_broker(timeout=timeout)
    if result.ok:
        return ""
    logger.warning("Live figures not read: %s", result.message)
    return broker.broker_down_message(gettext_noop("live figures (queues, workers, beat) could not be read"))


def live_state(*, stuck_limit: int = STUCK_LIMIT) -> LiveState:
    """Every live figure, after one ping of the broker.

    A broker that is down or frozen costs one timeout, not one per read.
    """
    from taskcenter.selectors import monitoring

    problem = broker_problem()
    if problem:
        unknown = [LiveQueue(name, None, None) for name in settings.TASKCENTER_QUEUES]
        beat = BeatSummary(
            True, False, None, None, None, 0, gettext("Beat status unknown: the broker is not reachable.")
        )
        return LiveState(LiveQueues(unknown, problem), [], beat, [], False)
    try:
        stuck = stuck_run_list(stuck_limit)
    except DatabaseError as exc:
        logger.warning("Stuck runs not read: %s", exc)
        stuck = None
    return LiveState(
        queues=live_queues(),
        workers=monitoring.workers_state(),
        beat=beat_summary(),
        stuck=stuck,
        monitor_alive=monitoring.monitor_alive(max_age=MONITOR_MAX_AGE),
    )


def snapshot() -> Snapshot:
    """Read what the alerts need; every read is bounded and survives a broker outage."""
    from taskcenter.selectors import monitoring

    recent = monitoring.summary(since=timezone.now() - FAILURE_WINDOW)
    failed = int(recent.get("failed") or 0)
    finished = failed + int(recent.get("succeeded") or 0)
    live = live_state(stuck_limit=max(STUCK_LIMIT, settings.TASKCENTER_ALERT_STUCK_RUNS))
    return Snapshot(
        failed=failed,
        finished=finished,
        failure_rate=(failed / finished) if finished else None,
        queues=live.queues,
        workers_online=live.workers_online,
        beat=live.beat,
        stuck_runs=len(live.stuck or []),
        monitor_alive=live.monitor_alive,
        schedules_in_error=_schedules_in_error(),
        dead_letters_recent=_dead_letters_recent(),
        task_failures=_task_failures(),
        new_failure_groups=_new_failure_groups(),
    )


def _task_failures() -> list[TaskFailures]:
    """Per task type, the runs that finished and failed in the last 5 minutes, those failing most first.

    Only task types with at least ``TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS`` finished
    runs (a rarely run task failing once is not a rate) and at least one failure.
    """
    from django.db.models import F, Sum

    from taskcenter.models import TaskMinute

    since = (timezone.now() - FAILURE_WINDOW).replace(second=0, microsecond=0)
    try:
        rows = (
            TaskMinute.objects.filter(minute__gte=since)
            .values("task_name")
            .annotate(failed_sum=Sum("failed"), finished_sum=Sum(F("failed") + F("succeeded")))
            .filter(failed_sum__gt=0, finished_sum__gte=settings.TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS)
            .order_by("-failed_sum", "task_name")[:PER_ITEM_LIMIT]
        )
        return [TaskFailures(row["task_name"], int(row["failed_sum"]), int(row["finished_sum"])) for row in rows]
    except DatabaseError as exc:
        logger.warning("Failures per task type not read: %s", exc)
        return []


def _new_failure_groups() -> list:
    """Failure groups first seen within ``TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES``, newest first."""
    from taskcenter.models import FailureGroup

    since = timezone.now() - timedelta(minutes=settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES)
    try:  # first seen since then implies last seen since then: read through the last_seen index
        groups = FailureGroup.objects.filter(last_seen__gte=since, first_seen__gte=since).exclude(
            status=FailureGroup.Status.IGNORED
        )
        return list(groups.defer("sample_traceback").order_by("-first_seen", "-id")[:PER_ITEM_LIMIT])
    except DatabaseError as exc:
        logger.warning("New failure groups not read: %s", exc)
        return []


def _dead_letters_recent() -> int:
    from taskcenter.selectors.deadletters import deadletters_recent

    try:
        return deadletters_recent(window=DEAD_LETTER_WINDOW)
    except DatabaseError as exc:
        logger.warning("Dead letters not read: %s", exc)
        return 0


def _schedules_in_error() -> list:
    from taskcenter.selectors.schedules import schedules_in_error

    try:
        return schedules_in_error()
    except DatabaseError as exc:
        logger.warning("Schedules in error not read: %s", exc)
        return []


# --- Alerts ---------------------------------------------------------------------------


def thresholds() -> list[Threshold]:
    """The configured thresholds, as the alerts page lists them."""
    return [
        Threshold(
            "TaskFailureRateHigh",
            "TASKCENTER_ALERT_FAILURE_RATE",
            settings.TASKCENTER_ALERT_FAILURE_RATE,
            gettext_lazy("share of finished tasks that failed over the last 5 minutes, above"),
        ),
        Threshold(
            "QueueBacklogHigh",
            "TASKCENTER_ALERT_QUEUE_DEPTH",
            settings.TASKCENTER_ALERT_QUEUE_DEPTH,
            gettext_lazy("messages waiting in a queue, above"),
        ),
        Threshold(
            "QueueMessagesTooOld",
            "TASKCENTER_ALERT_QUEUE_AGE",
            settings.TASKCENTER_ALERT_QUEUE_AGE,
            gettext_lazy("seconds the oldest message of a queue has waited, above"),
        ),
        Threshold("NoWorkersOnline", "", 0, gettext_lazy("workers online, equal to")),
        Threshold(
            "BeatNotTicking",
            "TASKCENTER_ALERT_BEAT_STALE",
            settings.TASKCENTER_ALERT_BEAT_STALE,
            gettext_lazy("seconds since the active beat last ticked, at least"),
        ),
        Threshold(
            "StuckRuns",
            "TASKCENTER_ALERT_STUCK_RUNS",
            settings.TASKCENTER_ALERT_STUCK_RUNS,
            gettext_lazy("orphaned runs (STARTED on a worker that is gone), at least"),
        ),
        Threshold(
            "MonitorDown",
            "",
            MONITOR_MAX_AGE,
            gettext_lazy("seconds since the event monitor last wrote its figures, at least"),
        ),
        Threshold("BrokerUnreachable", "", None, gettext_lazy("the broker (Redis) does not answer")),
        Threshold("ScheduleInError", "", None, gettext_lazy("a schedule beat could not evaluate or send")),
        Threshold(
            "DeadLettersArriving",
            "",
            0,
            gettext_lazy("unresolved dead letters that arrived in the last 10 minutes, above"),
        ),
        Threshold(
            "TaskTypeFailureRateHigh",
            "TASKCENTER_ALERT_FAILURE_RATE",
            settings.TASKCENTER_ALERT_FAILURE_RATE,
            gettext(
                "share of one task type's runs that failed over the last 5 minutes, above "
                "(with at least %(runs)s finished runs: TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS)"
            )
            % {"runs": settings.TASKCENTER_ALERT_FAILURE_RATE_MIN_RUNS},
        ),
        Threshold(
            "NewFailureGroup",
            "TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES",
            settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES,
            gettext_lazy("minutes since a failure group (not ignored) was first seen, within"),
        ),
    ]


def current_alerts() -> list[Alert]:
    """Every alert that fires now, most severe first."""
    return evaluate(snapshot())


def evaluate(state: Snapshot) -> list[Alert]:
    """The alerts ``state`` fires under the configured thresholds."""
    alerts: list[Alert] = []
    rate_limit = settings.TASKCENTER_ALERT_FAILURE_RATE
    if state.failure_rate is not None and state.failure_rate > rate_limit:
        alerts.append(
            Alert(
                "TaskFailureRateHigh",
                WARNING,
                gettext(
                    "%(failed)s of %(finished)s tasks finished in the last 5 minutes failed "
                    "(%(rate)s, threshold %(limit)s)."
                )
                % {
                    "failed": state.failed,
                    "finished": state.finished,
                    "rate": f"{state.failure_rate:.0%}",
                    "limit": f"{rate_limit:.0%}",
                },
                round(state.failure_rate, 4),
                rate_limit,
            )
        )
    if not state.queues.reachable:
        alerts.append(Alert("BrokerUnreachable", CRITICAL, state.queues.problem, None, None))
    depth_limit = settings.TASKCENTER_ALERT_QUEUE_DEPTH
    age_limit = settings.TASKCENTER_ALERT_QUEUE_AGE
    for queue in state.queues.queues:
        if queue.depth is not None and queue.depth > depth_limit:
            alerts.append(
                Alert(
                    "QueueBacklogHigh",
                    WARNING,
                    gettext("Queue %(queue)s holds %(depth)s messages (threshold %(limit)s).")
                    % {"queue": queue.name, "depth": queue.depth, "limit": depth_limit},
                    queue.depth,
                    depth_limit,
                )
            )
        if queue.oldest_age is not None and queue.oldest_age > age_limit:
            alerts.append(
                Alert(
                    "QueueMessagesTooOld",
                    WARNING,
                    gettext("The oldest message of queue %(queue)s has waited %(age)s s (threshold %(limit)s s).")
                    % {"queue": queue.name, "age": f"{queue.oldest_age:.0f}", "limit": age_limit},
                    round(queue.oldest_age, 1),
                    age_limit,
                )
            )
    if state.workers_online == 0:
        alerts.append(Alert("NoWorkersOnline", CRITICAL, gettext("No worker is online: nothing is being run."), 0, 0))
    stale = settings.TASKCENTER_ALERT_BEAT_STALE
    if state.beat.available and not state.beat.ticking(stale):
        if state.beat.leader is None:
            message = state.beat.message or gettext("No beat holds the leader lock: no schedule is being sent.")
        elif state.beat.last_tick_age is None:
            message = gettext("The active beat never ticked.")
        else:
            message = gettext("The active beat last ticked %(age)s s ago (threshold %(limit)s s).") % {
                "age": f"{state.beat.last_tick_age:.0f}",
                "limit": stale,
            }
        alerts.append(Alert("BeatNotTicking", CRITICAL, message, state.beat.last_tick_age, stale))
    stuck_limit = settings.TASKCENTER_ALERT_STUCK_RUNS
    if state.stuck_runs >= stuck_limit:
        alerts.append(
            Alert(
                "StuckRuns",
                WARNING,
                gettext("%(count)s run(s) orphaned: STARTED on a worker that is gone (threshold %(limit)s).")
                % {"count": state.stuck_runs, "limit": stuck_limit},
                state.stuck_runs,
                stuck_limit,
            )
        )
    if not state.monitor_alive:
        alerts.append(
            Alert(
                "MonitorDown",
                WARNING,
                gettext("The event monitor is not running: counts, charts and metrics are not being updated."),
                0,
                None,
            )
        )
    for name, error in state.schedules_in_error:
        alerts.append(
            Alert(
                "ScheduleInError",
                WARNING,
                gettext("Schedule %(name)s is not being sent: %(error)s") % {"name": name, "error": error},
                None,
                None,
            )
        )
    if state.dead_letters_recent > 0:
        alerts.append(
            Alert(
                "DeadLettersArriving",
                WARNING,
                gettext("%(count)s unresolved dead letter(s) arrived in the last 10 minutes.")
                % {"count": state.dead_letters_recent},
                state.dead_letters_recent,
                0,
            )
        )
    for task in state.task_failures:
        if task.rate is not None and task.rate > rate_limit:
            alerts.append(
                Alert(
                    "TaskTypeFailureRateHigh",
                    WARNING,
                    gettext(
                        "%(failed)s of %(finished)s runs of %(task)s finished in the last 5 minutes "
                        "failed (%(rate)s, threshold %(limit)s)."
                    )
                    % {
                        "failed": task.failed,
                        "finished": task.finished,
                        "task": task.task_name,
                        "rate": f"{task.rate:.0%}",
                        "limit": f"{rate_limit:.0%}",
                    },
                    round(task.rate, 4),
                    rate_limit,
                )
            )
    minutes = settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES
    for group in state.new_failure_groups:
        alerts.append(
            Alert(
                "NewFailureGroup",
                WARNING,
                gettext(
                    "New failure: %(exception)s in %(task)s at %(place)s, first seen %(time)s "
                    "(%(count)s run(s), within %(minutes)s minutes)."
                )
                % {
                    "exception": group.exception_type,
                    "task": group.task_name,
                    "place": group.location or gettext("an unknown place"),
                    "time": f"{timezone.localtime(group.first_seen):%H:%M:%S}",
                    "count": group.count,
                    "minutes": minutes,
                },
                group.count,
                minutes,
            )
        )
    return sorted(alerts, key=lambda alert: alert.severity != CRITICAL)


# --- Readiness -------------------------------------------------------------------------

#: Seconds each readiness check may take; a check without an answer by then fails
#: (below 2 s, so /readyz answers within 2 s even with a frozen broker).
CHECK_TIMEOUT = 1.5
#: Threads that run the readiness checks; a hung check holds one until its own socket timeout.
_CHECK_EXECUTOR = ThreadPoolExecutor(max_workers=8, thread_name_prefix="taskcenter-ready")


def readiness_checks(*, timeout: float = CHECK_TIMEOUT) -> list[CheckResult]:
    """Database, broker, workers online, beat ticking: run at once in threads, none longer than ``timeout``."""
    checks = {
        "database": check_database,
        "broker": check_broker,
        "workers": check_workers,
        "beat": lambda: check_beat(timeout=max(0.5, timeout - 0.5)),
    }
    language = translation.get_language()  # the pool's threads answer in the caller's language
    futures = {name: _CHECK_EXECUTOR.submit(_closing_connections, check, language) for name, check in checks.items()}
    deadline = time.monotonic() + timeout
    results = []
    for name, future in futures.items():
        try:
            results.append(future.result(timeout=max(0.0, deadline - time.monotonic())))
        except FutureTimeout:
            logger.warning("Readiness check %s did not answer within %s s", name, timeout)
            results.append(
                CheckResult(name, False, gettext("No answer within %(seconds)s s.") % {"seconds": f"{timeout:g}"})
            )
        except Exception as exc:
            logger.warning("Readiness check %s failed: %r", name, exc)
            results.append(CheckResult(name, False, gettext("Check failed: %(error)s") % {"error": exc}))
    return results


def check_workers() -> CheckResult:
    from taskcenter.selectors import monitoring

    online = sorted(worker.hostname for worker in monitoring.workers_state() if worker.online)
    if not online:
        return CheckResult("workers", False, gettext("No worker is online."))
    return CheckResult(
        "workers",
        True,
        gettext("%(count)s worker(s) online: %(names)s.") % {"count": len(online), "names": ", ".join(online[:5])},
    )


def check_beat(*, timeout: float = 1.5) -> CheckResult:
    beat = beat_summary(timeout=timeout)
    stale = settings.TASKCENTER_ALERT_BEAT_STALE
    if not beat.available:
        return CheckResult("beat", False, beat.message)
    if beat.ticking(stale):
        who = beat.leader.get("hostname") or beat.leader.get("id") or "?"
        said = gettext("Beat %(who)s is active; last tick %(age)s s ago.")
        return CheckResult("beat", True, said % {"who": who, "age": f"{beat.last_tick_age:.1f}"})
    if beat.leader is not None and beat.last_tick_age is not None:
        said = gettext("Beat last ticked %(age)s s ago (limit %(limit)s s).")
        return CheckResult("beat", False, said % {"age": f"{beat.last_tick_age:.0f}", "limit": stale})
    return CheckResult("beat", False, beat.message or gettext("No beat is running."))


def _closing_connections(check, language: str | None = None):
    """Run ``check`` in a pool thread, in ``language``, and close the database connections that thread opened."""
    try:
        with translation.override(language):
            return check()
    finally:
        connections.close_all()


# --- Summary for every page (navigation badge and banner) -------------------------------

#: Seconds one computed summary serves every page (per cache: per process with the
#: default local-memory cache, shared with TASKCENTER_CACHE_URL).
SUMMARY_CACHE_SECONDS = 5
SUMMARY_CACHE_KEY = "taskcenter:alert-summary"


@dataclass(frozen=True)
class AlertSummary:
    """How many alerts fire and which; ``known`` is False when they could not be computed."""

    count: int = 0
    critical: int = 0
    names: tuple[str, ...] = ()
    known: bool = True

    @property
    def firing(self) -> bool:
        return self.count > 0


def alert_summary(*, cache_seconds: float | None = None) -> AlertSummary:
    """The alerts firing now, for the badge and banner of every page: cached a few seconds.

    A cached summary costs one cache read and no query. On a miss the alerts are
    computed once (bounded reads: one broker ping first, so a broker that is down or
    frozen costs one request timeout, and the outcome is cached like any other); a
    failure gives an unknown summary rather than a broken page.
    """
    from django.core.cache import cache

    try:
        cached = cache.get(SUMMARY_CACHE_KEY)
    except Exception as exc:  # a cache in Redis can be down too
        logger.warning("Alert summary not read from the cache: %s", exc)
        cached = None
    if isinstance(cached, AlertSummary):
        return cached
    try:
        summary = summarise(current_alerts())
    except Exception as exc:  # every page shows the banner: it must never break one
        logger.warning("Alert summary not computed: %s", exc)
        summary = AlertSummary(known=False)
    alert_summary_store(summary=summary, cache_seconds=cache_seconds)
    return summary


def summarise(alerts: list[Alert]) -> AlertSummary:
    """The badge's summary of ``alerts``."""
    names = tuple(dict.fromkeys(alert.name for alert in alerts))
    return AlertSummary(
        count=len(alerts), critical=sum(1 for alert in alerts if alert.severity == CRITICAL), names=names
    )


def alert_summary_store(*, summary: AlertSummary, cache_seconds: float | None = None) -> None:
    """Keep ``summary`` for the next pages (the alerts page stores what it has just computed)."""
    from django.core.cache import cache

    seconds = SUMMARY_CACHE_SECONDS if cache_seconds is None else cache_seconds
    try:
        cache.set(SUMMARY_CACHE_KEY, summary, seconds)
    except Exception as exc:
        logger.warning("Alert summary not cached: %s", exc)
