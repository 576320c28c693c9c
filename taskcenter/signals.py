"""Celery signal receivers, connected in ``TaskcenterConfig.ready()``."""

import logging
import time

from celery import signals
from django.conf import settings
from django.utils.translation import gettext

from taskcenter.broker import use_long_lived_timeouts
from taskcenter.services.recording import (
    PRIORITY_HEADER,
    SENT_AT_HEADER,
    recorded_by_launch,
    run_record_published,
)

logger = logging.getLogger("taskcenter.worker")


def annotate_message(sender=None, headers=None, properties=None, body=None, **_):
    """Stamp the send time (for queue age) and copy the priority for ``record_publish``."""
    if headers is None:
        return
    headers[SENT_AT_HEADER] = time.time()
    if properties:
        headers[PRIORITY_HEADER] = properties.get("priority")


def record_publish(sender=None, headers=None, body=None, routing_key=None, **_):
    """Record a run for every task published by beat or by code, not by the launch service.

    Only the launch service's in-process mark skips a run; no message header can.
    """
    headers = headers or {}
    if not headers.get("id") or recorded_by_launch(headers["id"]):
        return
    run_record_published(
        task_id=headers["id"],
        task_name=headers.get("task") or sender,
        queue=routing_key,
        headers=headers,
        body=body,
    )


def log_worker_banner(sender=None, **_):
    """Log the queues and key settings a worker starts with."""
    consumer = sender  # the worker's Consumer
    app = consumer.app
    conf = app.conf
    queues = sorted(queue.name for queue in app.amqp.queues.consume_from.values())
    logger.info(
        "taskcenter worker %s ready: queues=%s concurrency=%s prefetch_multiplier=%s acks_late=%s "
        "reject_on_worker_lost=%s time_limit=%ss soft_time_limit=%ss max_tasks_per_child=%s "
        "max_memory_per_child=%sKiB started_write_delay=%ss broker=%s result_backend=%s serializer=%s",
        getattr(sender, "hostname", "?"),
        ",".join(queues),
        conf.worker_concurrency,
        conf.worker_prefetch_multiplier,
        conf.task_acks_late,
        conf.task_reject_on_worker_lost,
        conf.task_time_limit,
        conf.task_soft_time_limit,
        conf.worker_max_tasks_per_child,
        conf.worker_max_memory_per_child,
        settings.TASKCENTER_STARTED_WRITE_DELAY,
        app.connection_for_write().as_uri(),  # as_uri() hides the password
        conf.result_backend,
        conf.task_serializer,
    )


def prepare_worker(sender=None, **_):
    """Before the worker consumes: revokes, paused queues and rate limits that outlive workers."""
    from taskcenter.services.control import revoked_store_load_into_worker
    from taskcenter.services.workers import worker_apply_saved_state

    revoked_store_load_into_worker()
    worker_apply_saved_state(sender)


def on_worker_ready(sender=None, **_):
    """Once connected: load revokes again (the broker may have been down at start-up)."""
    from taskcenter.services.control import revoked_store_load_into_worker

    revoked_store_load_into_worker()
    log_worker_banner(sender)


def record_final_failure(
    sender=None, task_id=None, exception=None, args=None, kwargs=None, traceback=None, einfo=None, **_
):
    """Keep a dead letter for a run that failed for good, then apply its recovery strategy.

    A retry raises ``Retry``, not this signal.
    """
    from taskcenter.models import DeadLetter
    from taskcenter.services.deadletters import deadletter_record, format_traceback

    request = getattr(sender, "request", None)
    delivery = getattr(request, "delivery_info", None) or {}
    deadletter_record(
        task_id=task_id,
        task_name=getattr(sender, "name", None),
        reason=DeadLetter.Reason.FAILED,
        queue=delivery.get("routing_key") if isinstance(delivery, dict) else "",
        exception=exception,
        traceback=getattr(einfo, "traceback", None) or format_traceback(exception, traceback),
        args=args,
        kwargs=kwargs,
        worker=getattr(request, "hostname", "") or "",
    )
    from taskcenter.services.recovery import recovery_apply_after_failure

    recovery_apply_after_failure(task_id=task_id, task_name=getattr(sender, "name", None))


def record_expired(sender=None, request=None, expired=False, **_):
    """Keep a dead letter for a run that expired before a worker started it."""
    if not expired:
        return
    from taskcenter.models import DeadLetter
    from taskcenter.services.deadletters import deadletter_record

    delivery = getattr(request, "delivery_info", None) or {}
    deadletter_record(
        task_id=getattr(request, "id", None),
        task_name=getattr(sender, "name", None) or getattr(request, "task", None),
        reason=DeadLetter.Reason.EXPIRED,
        queue=delivery.get("routing_key") if isinstance(delivery, dict) else "",
        message=gettext("Expired before it ran (expires %(expires)s).")
        % {"expires": getattr(request, "expires", None)},
        args=getattr(request, "args", None),
        kwargs=getattr(request, "kwargs", None),
        worker=getattr(request, "hostname", "") or "",
    )


def record_unknown_task(sender=None, message=None, exc=None, name=None, id=None, **_):
    """Keep a dead letter for a message naming a task this worker does not know (Celery rejected it)."""
    from celery.exceptions import NotRegistered

    from taskcenter.models import DeadLetter
    from taskcenter.services.deadletters import deadletter_record

    delivery = getattr(message, "delivery_info", None) or {}
    deadletter_record(
        task_id=id if isinstance(id, str) else None,
        task_name=name if isinstance(name, str) else None,
        reason=DeadLetter.Reason.REJECTED,
        queue=delivery.get("routing_key") if isinstance(delivery, dict) else "",
        exception=NotRegistered(name),
        message=gettext("Unknown task %(name)r: no worker of this app has it registered.") % {"name": name},
        worker=getattr(sender, "hostname", "") or "",
    )


def publish_retry_policies(sender=None, **_):
    """Copy the operators' retry policy overrides to Redis, in case Redis lost them (one query per start)."""
    from taskcenter.services.retry_policy import retry_policies_publish

    try:
        retry_policies_publish()
    except Exception:  # noqa: BLE001 (a worker must start even when the database or Redis fails here)
        logger.warning("Could not copy the retry policy overrides to Redis", exc_info=True)


def connect() -> None:
    signals.before_task_publish.connect(annotate_message, dispatch_uid="taskcenter.annotate_message")
    signals.after_task_publish.connect(record_publish, dispatch_uid="taskcenter.record_publish")
    signals.worker_init.connect(prepare_worker, dispatch_uid="taskcenter.prepare_worker")
    signals.worker_ready.connect(on_worker_ready, dispatch_uid="taskcenter.worker_ready")
    # Workers and beat wait longer on the broker than a web request does (see settings).
    signals.worker_init.connect(use_long_lived_timeouts, dispatch_uid="taskcenter.worker_broker_timeouts")
    signals.beat_init.connect(use_long_lived_timeouts, dispatch_uid="taskcenter.beat_broker_timeouts")
    # Dead letters: failure paths only, nothing on a successful task's path.
    signals.task_failure.connect(record_final_failure, dispatch_uid="taskcenter.deadletter_failure")
    signals.task_revoked.connect(record_expired, dispatch_uid="taskcenter.deadletter_expired")
    signals.task_unknown.connect(record_unknown_task, dispatch_uid="taskcenter.deadletter_unknown")
    signals.worker_ready.connect(publish_retry_policies, dispatch_uid="taskcenter.publish_retry_policies")
    # Checkpoints kept back by the rate limit are written when the task ends (a dict lookup otherwise).
    from taskcenter.checkpoints import flush_at_task_end

    signals.task_postrun.connect(flush_at_task_end, dispatch_uid="taskcenter.checkpoints_flush")
    # A pool process keeps its database connection across tasks, closing only a broken or old one.
    from taskcenter.worker_db import close_unusable_connections, keep_connections_in_pool_process

    signals.worker_process_init.connect(keep_connections_in_pool_process, dispatch_uid="taskcenter.worker_db_keep")
    signals.task_postrun.connect(close_unusable_connections, dispatch_uid="taskcenter.worker_db_close")
