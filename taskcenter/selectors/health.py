"""Checks of the broker, the database and the Celery settings taskcenter relies on."""

from dataclasses import dataclass

from celery import current_app
from django.conf import settings
from django.db import DatabaseError, connection
from django.utils.translation import gettext as _

from taskcenter.broker import broker_client


@dataclass(frozen=True)
class CheckResult:
    """One check; ``message`` may name hosts, users and errors, so it is for operators only."""

    name: str
    ok: bool
    message: str


def check_broker(*, timeout: float | None = None) -> CheckResult:
    """Connect to the broker and ping it, giving up after ``timeout`` seconds (one request timeout by default)."""
    url = current_app.connection_for_write().as_uri()  # as_uri() hides the password
    try:
        with broker_client(timeout=timeout) as client:
            client.ping()
    except Exception as exc:  # any failure here means "does not answer"
        return CheckResult("broker", False, _("Broker %(url)s does not answer: %(error)s") % {"url": url, "error": exc})
    return CheckResult("broker", True, _("Broker %(url)s answers.") % {"url": url})


def check_database() -> CheckResult:
    """Run ``SELECT 1`` on the default database."""
    vendor = connection.vendor
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        return CheckResult(
            "database", False, _("Database (%(vendor)s) does not answer: %(error)s") % {"vendor": vendor, "error": exc}
        )
    return CheckResult("database", True, _("Database (%(vendor)s) answers.") % {"vendor": vendor})


def check_celery_settings() -> list[CheckResult]:
    """Compare the running Celery configuration with what taskcenter requires."""
    conf = current_app.conf
    results = []

    def expect(name: str, ok: bool, good: str, bad: str) -> None:
        results.append(CheckResult(name, ok, good if ok else bad))

    accepted = set(conf.accept_content or ()) | set(conf.result_accept_content or ())
    expect(
        "serialization",
        conf.task_serializer == "json"
        and conf.result_serializer == "json"
        and accepted <= {"json", "application/json"},
        _("JSON serialization only."),
        _(
            "Serialization must be JSON only (task=%(task)s, result=%(result)s, accepted=%(accepted)s); "
            "pickle lets the broker run code on workers."
        )
        % {"task": conf.task_serializer, "result": conf.result_serializer, "accepted": sorted(accepted)},
    )
    expect(
        "result_backend",
        bool(conf.result_backend) and conf.result_extended,
        _("Results stored in %(backend)s with result_extended on.") % {"backend": conf.result_backend},
        _("Results need a backend (CELERY_RESULT_BACKEND=django-db) and result_extended on for history."),
    )
    expect(
        "acks_late",
        conf.task_acks_late and conf.task_reject_on_worker_lost,
        _("Tasks acknowledged after running; given back if the worker dies."),
        _("task_acks_late and task_reject_on_worker_lost must both be on, or a killed worker loses its task."),
    )
    expect(
        "prefetch",
        conf.worker_prefetch_multiplier == 1,
        _("Workers prefetch one message per process."),
        _("worker_prefetch_multiplier is %(multiplier)s; 1 keeps long tasks from holding others.")
        % {"multiplier": conf.worker_prefetch_multiplier},
    )
    expect(
        "events",
        conf.worker_send_task_events and conf.task_send_sent_event and conf.task_track_started,
        _("Task events, sent events and started tracking on."),
        _("Monitoring needs worker_send_task_events, task_send_sent_event and task_track_started on."),
    )
    expect(
        "time_limits",
        bool(conf.task_time_limit)
        and bool(conf.task_soft_time_limit)
        and conf.task_soft_time_limit < conf.task_time_limit,
        _("Time limits: soft %(soft)ss, hard %(hard)ss.")
        % {"soft": conf.task_soft_time_limit, "hard": conf.task_time_limit},
        _("Set CELERY_TASK_SOFT_TIME_LIMIT below CELERY_TASK_TIME_LIMIT."),
    )
    visibility = (conf.broker_transport_options or {}).get("visibility_timeout", 3600)
    expect(
        "visibility_timeout",
        visibility > (conf.task_time_limit or 0),
        _("Redis visibility timeout %(visibility)ss exceeds the longest run (%(limit)ss).")
        % {"visibility": visibility, "limit": conf.task_time_limit},
        _(
            "Redis visibility timeout %(visibility)ss must exceed CELERY_TASK_TIME_LIMIT (%(limit)ss), "
            "or long runs are delivered twice."
        )
        % {"visibility": visibility, "limit": conf.task_time_limit},
    )
    policy = conf.task_publish_retry_policy or {}
    bounded = policy.get("max_retries") is not None and policy.get("max_retries", 99) <= 3
    expect(
        "publish_retry",
        bounded,
        _("Publishing gives up after a bounded number of retries."),
        _("task_publish_retry_policy needs a small max_retries so a down broker fails fast."),
    )
    declared = {queue.name for queue in (conf.task_queues or ())}
    missing = [name for name in settings.TASKCENTER_QUEUES if name not in declared]
    expect(
        "queues",
        not missing and conf.task_default_queue in declared,
        _("Queues: %(queues)s (default %(default)s).")
        % {"queues": ", ".join(sorted(declared)), "default": conf.task_default_queue},
        _("Queues %(queues)s are configured but not declared to Celery.")
        % {"queues": missing or [conf.task_default_queue]},
    )
    return results


def run_all_checks(*, connectivity: bool = True) -> list[CheckResult]:
    """Every check, settings first; ``connectivity=False`` skips broker and database."""
    results = check_celery_settings()
    if connectivity:
        results = [check_database(), check_broker(), *results]
    return results
