"""Worker-side message guard: no message, whoever sent it, may crash a worker.

Celery's consumer hands each task message to the task's strategy, which builds a
request and gives it to the pool. An exception on that path (a ``RecursionError``
while pickling arguments nested hundreds deep, a ``KeyError`` for a missing
header, ...) escapes the consumer: the worker stops and the message, never
acknowledged, goes back to the head of the queue for the next worker to die on.

Two bootsteps, installed on the project's app in ``config/celery.py``, close that
path for every task, catalogued or not, and every client (taskcenter, a plain
Celery ``send_task``, a kombu producer, a raw ``LPUSH``):

- ``MessageGuard`` (consumer) checks each message before Celery reads it: size,
  headers, content type, body shape, nesting depth. A message that fails is
  rejected without requeue, logged, and, when it names a task id, recorded as a
  FAILURE result with the reason. Any exception Celery raises while handling
  the message is treated the same way.
- ``PoolGuard`` (worker) does the same for an exception while handing a request
  to the pool, and gives back the pool slot it held.

A message that comes back marked ``redelivered`` (kombu's restore after a visibility
timeout, taskcenter's recovery of a lost worker's messages, see ``taskcenter.recovery``)
is acknowledged without running when its run is already recorded as finished
(``redelivered_finished_state``); first deliveries pay no extra lookup. The
``taskcenter_held`` control command tells the monitor which task ids the worker holds.
"""

import logging

from celery import bootsteps, states
from celery.exceptions import InvalidTaskError
from celery.utils.objects import Bunch
from celery.worker import state as worker_state
from celery.worker.control import control_command, inspect_command, ok
from django.conf import settings
from django.utils.translation import gettext
from kombu.exceptions import ContentDisallowed, DecodeError

from taskcenter.broker import client_reusing

logger = logging.getLogger(__name__)

MAX_TASK_ID_LENGTH = 255  # django-celery-results' TaskResult.task_id


class MessageRejected(Exception):
    """The worker refused a task message; the message says why."""


def nesting_depth_exceeds(value, limit: int) -> bool:
    """Whether ``value`` holds lists or dicts nested deeper than ``limit`` levels.

    Iterative, so it cannot itself hit the recursion limit.
    """
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict):
            children = item.values()
        elif isinstance(item, list | tuple):
            children = item
        else:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list | tuple))
    return False


def message_problem(message) -> str | None:
    """Why the worker must refuse ``message``, or None when it is safe to hand to Celery."""
    max_bytes = settings.TASKCENTER_MESSAGE_MAX_BYTES
    max_depth = settings.TASKCENTER_MESSAGE_MAX_DEPTH
    headers = message.headers
    if not isinstance(headers, dict):
        return gettext("message has no headers")
    body = message.body
    size = len(body) if isinstance(body, bytes | str) else 0
    if size > max_bytes:
        return gettext("message of %(size)s bytes is larger than the limit of %(limit)s bytes") % {
            "size": size,
            "limit": max_bytes,
        }
    if nesting_depth_exceeds(headers, max_depth):
        return gettext("headers nested deeper than %(depth)s levels") % {"depth": max_depth}
    protocol2 = "task" in headers
    if protocol2:
        for name in ("task", "id"):
            if not isinstance(headers.get(name), str) or not headers[name]:
                return gettext("header %(name)r is missing or not a string") % {"name": name}
        if len(headers["id"]) > MAX_TASK_ID_LENGTH:
            return gettext("task id longer than %(length)s characters") % {"length": MAX_TASK_ID_LENGTH}
    accepted = message.accept
    if accepted is not None and message.content_type not in accepted:
        return gettext("content type %(type)r is not accepted (accepted: %(accepted)s)") % {
            "type": message.content_type,
            "accepted": ", ".join(sorted(accepted)),
        }
    try:
        payload = message.decode()  # kombu keeps the decoded body; Celery reads it from there
    except Exception as exc:  # noqa: BLE001 (any decoding failure is the message's fault)
        cause = exc.__cause__ or exc.__context__ or exc
        return gettext("body could not be decoded: %(error)s") % {
            "error": f"{type(cause).__name__}: {str(cause)[:200]}"
        }
    if protocol2:
        if not isinstance(payload, list | tuple) or len(payload) != 3:
            return gettext("body is not a list of [args, kwargs, embed]")
        args, kwargs, embed = payload
        if embed is not None and not isinstance(embed, dict):
            return gettext("body's embed (callbacks, chain, chord) is not an object")
    else:
        if not isinstance(payload, dict) or not isinstance(payload.get("task"), str):
            return gettext("message names no task")
        if not isinstance(payload.get("id"), str) or not payload["id"] or len(payload["id"]) > MAX_TASK_ID_LENGTH:
            return gettext("message has no usable task id")
        args, kwargs = payload.get("args", ()), payload.get("kwargs", {})
    if not isinstance(args, list | tuple):
        return gettext("arguments (args) are not a list")
    if not isinstance(kwargs, dict):
        return gettext("keyword arguments (kwargs) are not an object")
    if nesting_depth_exceeds(payload, max_depth):
        return gettext("arguments nested deeper than %(depth)s levels") % {"depth": max_depth}
    return None


def _task_identity(message) -> tuple[str | None, str | None]:
    """The task id and name a message claims, when they are usable strings."""
    headers = message.headers if isinstance(message.headers, dict) else {}
    task_id, name = headers.get("id"), headers.get("task")
    if task_id is None:
        payload = getattr(message, "_decoded_cache", None)
        if isinstance(payload, dict):
            task_id, name = payload.get("id"), payload.get("task")
    if not isinstance(task_id, str) or not task_id or len(task_id) > MAX_TASK_ID_LENGTH:
        task_id = None
    if not isinstance(name, str) or len(name) > 255:
        name = None
    return task_id, name


def _text(value) -> str | None:
    return value if isinstance(value, str) and len(value) <= MAX_TASK_ID_LENGTH else None


def refuse(message, reason: str, *, app, hostname: str | None = None, eventer=None) -> None:
    """Reject ``message`` without requeue and record why as the FAILURE of its task id."""
    task_id, name = _task_identity(message)
    logger.error(
        "Rejected task message %s (%s) from queue %s: %s",
        task_id, name, (message.delivery_info or {}).get("routing_key"), reason,
    )  # fmt: skip
    if not message.acknowledged:
        try:
            message.reject(requeue=False)
        except Exception:
            logger.exception("Could not reject task message %s", task_id)
    _dead_letter(message, task_id, name, reason, hostname)
    if task_id is None:
        return
    exc = MessageRejected(f"Rejected: {reason}")
    try:
        if app.backend.get_state(task_id) != states.PENDING:
            # The id belongs to a run that started or finished: a bad message must not overwrite it.
            logger.warning("Not recording the rejection of %s: the task id already has a result", task_id)
            return
        headers = message.headers if isinstance(message.headers, dict) else {}
        request = Bunch(
            id=task_id, task=name, name=name, args=[], kwargs={}, argsrepr=None, kwargsrepr=None,
            hostname=hostname, retries=0, delivery_info=message.delivery_info or {},
            root_id=_text(headers.get("root_id")), parent_id=_text(headers.get("parent_id")), group=None,
            chord=None, chain=None, errbacks=None, periodic_task_name=None, ignore_result=False,
            correlation_id=task_id, reply_to=None,
        )  # fmt: skip
        app.backend.store_result(task_id, exc, states.FAILURE, request=request)
    except Exception:
        logger.exception("Could not record the rejection of task %s", task_id)
    if eventer is not None and getattr(eventer, "enabled", False):
        try:
            eventer.send("task-failed", uuid=task_id, exception=repr(exc), traceback="", name=name)
        except Exception:
            logger.exception("Could not send the task-failed event of %s", task_id)


def _dead_letter(message, task_id, name, reason: str, hostname) -> None:
    """Keep the refused message as a dead letter (arguments are not kept: they may be what is wrong)."""
    from taskcenter.models import DeadLetter
    from taskcenter.services.deadletters import deadletter_record

    deadletter_record(
        task_id=task_id,
        task_name=name,
        reason=DeadLetter.Reason.REJECTED,
        queue=(message.delivery_info or {}).get("routing_key") if isinstance(message.delivery_info, dict) else "",
        exception=MessageRejected(f"Rejected: {reason}"),
        worker=hostname,
    )


def guard_task_handler(consumer, handler):
    """Wrap the consumer's ``on_task_received`` so that no message can raise out of it."""

    def on_task_received(message):
        try:
            reason = message_problem(message)
        except Exception as exc:  # noqa: BLE001
            reason = gettext("message could not be read: %(error)s") % {"error": type(exc).__name__}
        if reason is not None:
            return refuse(
                message, reason, app=consumer.app, hostname=consumer.hostname, eventer=consumer.event_dispatcher
            )
        if is_redelivered(message) and acknowledge_if_finished(message):
            return None
        try:
            return handler(message)
        except (InvalidTaskError, ContentDisallowed, DecodeError) as exc:
            # Raised past Celery's own handler (e.g. from an ETA or rate-limit path).
            reason = f"{type(exc).__name__}: {exc}"
        except Exception as exc:  # noqa: BLE001 (a worker must outlive any message)
            logger.exception("Error while handling a task message")
            reason = gettext("%(error)s while handling the message: %(detail)s") % {
                "error": type(exc).__name__,
                "detail": str(exc)[:200],
            }
        refuse(message, reason, app=consumer.app, hostname=consumer.hostname, eventer=consumer.event_dispatcher)

    return on_task_received


def is_redelivered(message) -> bool:
    """Whether kombu (or taskcenter's recovery) gave this message back after a first delivery."""
    info = message.delivery_info if isinstance(message.delivery_info, dict) else {}
    headers = message.headers if isinstance(message.headers, dict) else {}
    return bool(info.get("redelivered") or headers.get("redelivered"))


def redelivered_finished_state(task_id: str) -> str | None:
    """The final state already recorded for ``task_id`` (its run's, else its result's), or None.

    At most two indexed reads, paid only by redelivered messages.
    """
    from django_celery_results.models import TaskResult

    from taskcenter.models import OUTCOME_STATES, Run

    recorded = Run.objects.filter(task_result_id=task_id).values_list("recorded_state", flat=True).first()
    if recorded in OUTCOME_STATES:
        return recorded
    status = TaskResult.objects.filter(task_id=task_id).values_list("status", flat=True).first()
    return status if status in states.READY_STATES else None


def acknowledge_if_finished(message) -> bool:
    """Acknowledge a redelivered message whose run already finished; True when it was (it must not run again)."""
    task_id, name = _task_identity(message)
    if task_id is None:
        return False
    try:
        state = redelivered_finished_state(task_id)
    except Exception:  # noqa: BLE001 (the database may be down: run it rather than lose it)
        logger.exception("Could not check whether redelivered task %s already finished", task_id)
        return False
    if state is None:
        return False
    logger.warning(
        "Acknowledged the redelivered message of %s (%s) without running it: it already finished in %s",
        task_id, name, state,
    )  # fmt: skip
    if not message.acknowledged:
        message.ack()
    return True


@inspect_command()
def taskcenter_held(state, **kwargs):
    """The ids of every task this worker holds: running, reserved, or waiting for its ETA."""
    held = set(worker_state.requests)
    held.update(request.id for request in getattr(worker_state, "scheduled_requests", ()))
    return {"ids": sorted(held)}


@control_command(args=[("queue", str)], signature="<queue>")
def taskcenter_resume_queue(state, queue, **kwargs):
    """Consume ``queue`` again, if this worker was started to consume it.

    Celery's own ``add_consumer`` would make every worker take the queue, including those
    dedicated to other queues; a resume must only undo a pause.
    """
    from taskcenter.services.workers import worker_was_started_for

    if not worker_was_started_for(queue):
        return ok(f"{queue} is not among this worker's queues")
    state.consumer.call_soon(state.consumer.add_task_queue, queue)
    return ok(f"resumed {queue}")


@control_command()
def taskcenter_pool_maintain(state, **kwargs):
    """Start or remove pool processes now to match the pool's size, and report the processes.

    After ``pool_grow`` or ``pool_shrink`` Celery does this at its next pool check, up to
    5 s later; the Workers page asks for it at once so the new size shows on the next page.
    """
    pool = state.consumer.pool
    try:
        pool.maintain_pool()
    except Exception as exc:  # a pool that refuses (closing, restarting too often) answers with the reason
        logger.warning("Pool maintenance on request failed: %r", exc)
        return {"error": f"pool maintenance failed: {exc!r}"}
    info = pool.info if isinstance(pool.info, dict) else {}
    processes = info.get("processes")
    return ok(f"{len(processes) if isinstance(processes, list) else '?'} process(es)")


class MessageGuard(bootsteps.Step):
    """Consumer step: check every task message before Celery handles it."""

    requires = ("celery.worker.consumer.tasks:Tasks",)

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        create_task_handler = parent.create_task_handler

        def guarded_create_task_handler(*args, **kw):
            return guard_task_handler(parent, create_task_handler(*args, **kw))

        def on_invalid_task(body, message, exc):
            # Celery's own handler rejects and logs, but leaves the run PENDING for ever.
            refuse(
                message, f"invalid task message: {exc}",
                app=parent.app, hostname=parent.hostname, eventer=parent.event_dispatcher,
            )  # fmt: skip

        # Instance attributes: create_task_handler() reads them when the event loop starts.
        parent.create_task_handler = guarded_create_task_handler
        parent.on_invalid_task = on_invalid_task
        guard_redis_reads()
        reuse_redis_clients()


def guard_redis_reads() -> None:
    """Drop, with a log line, an entry on a Redis queue that is not a kombu message at all.

    kombu parses the envelope (JSON with ``body``, ``headers``, ``properties``) of a
    popped entry before any consumer callback runs, so a raw ``LPUSH`` of anything
    else raises out of the worker's event loop. The entry is already off the list.
    """
    from kombu.transport import redis as kombu_redis

    channel = kombu_redis.Channel
    if getattr(channel._brpop_read, "taskcenter_guarded", False):
        return
    brpop_read = channel._brpop_read

    def _brpop_read(self, **options):
        try:
            return brpop_read(self, **options)
        except (kombu_redis.Empty, *self.connection_errors):
            raise
        except Exception:  # noqa: BLE001 (a worker must outlive any queue entry)
            logger.exception("Dropped an entry on a Redis queue that is not a readable task message")
            return True

    _brpop_read.taskcenter_guarded = True
    channel._brpop_read = _brpop_read


def reuse_redis_clients() -> None:
    """Let every kombu Redis channel of this worker process reuse one client per connection pool.

    The app's own connections already do (``taskcenter.broker.ReusingConnection``); a
    worker also patches kombu's class, so channels made by any other path do too.
    """
    from kombu.transport import redis as kombu_redis

    kombu_redis.Channel._create_client = client_reusing(kombu_redis.Channel._create_client)


class PoolGuard(bootsteps.Step):
    """Worker step: a request the pool cannot take is refused, and its pool slot given back."""

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        process_task = worker._process_task

        def guarded_process_task(request):
            try:
                return process_task(request)
            except Exception as exc:  # noqa: BLE001 (a worker must outlive any message)
                logger.exception("Could not hand task %s to the pool", request.id)
                _give_back_slot(worker, request)
                consumer = getattr(worker, "consumer", None)
                refuse(
                    request.message,
                    f"{type(exc).__name__} while handing the task to the pool: {str(exc)[:200]}",
                    app=worker.app,
                    hostname=worker.hostname,
                    eventer=getattr(consumer, "event_dispatcher", None),
                )

        worker._process_task = guarded_process_task


def _give_back_slot(worker, request) -> None:
    """Undo what a failed hand-off to the pool left behind: the semaphore slot and the pool's job entry."""
    worker_state.task_ready(request)
    if getattr(worker, "semaphore", None) is not None and worker.process_task == worker._process_task_sem:
        worker._quick_release()
    cache = getattr(getattr(worker.pool, "_pool", None), "_cache", None)
    if isinstance(cache, dict):
        for job, result in list(cache.items()):
            if getattr(result, "correlation_id", None) == request.id and not result.ready():
                cache.pop(job, None)


def install(app) -> None:
    """Add the message guard steps and the scheduled set's pump to ``app``'s workers."""
    from taskcenter.scheduled_set import ScheduledSetPump

    app.steps["consumer"].add(MessageGuard)
    from taskcenter.worker_events import EventBatches

    app.steps["consumer"].add(EventBatches)
    app.steps["worker"].add(PoolGuard)
    app.steps["worker"].add(ScheduledSetPump)
    from taskcenter.worker_timer import TimerSweep

    app.steps["worker"].add(TimerSweep)
