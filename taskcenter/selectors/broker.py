"""Reads of the broker itself: the Broker page (Redis's own figures) and the queue browser (messages of a queue).

Everything is read through ``taskcenter.broker``; a broker that is down or frozen raises
``BrokerUnreadable`` (503) within the request timeout.
"""

import base64
import binascii
import hashlib
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime

from django.conf import settings
from django.utils.translation import gettext as _

from taskcenter import broker, catalogue, secret_arguments
from taskcenter.models import Run
from taskcenter.priorities import REDIS_PRIORITY_STEPS, Priority
from taskcenter.services import errors

#: Messages shown per priority list on one page of the queue browser, and the largest offset accepted.
PAGE_SIZE = 50
MAX_OFFSET = 10_000_000
#: Characters of a message's arguments shown.
ARGUMENTS_SHOWN = 500
#: Priority name of each broker priority step (0 is served first).
PRIORITY_NAMES = {priority.broker_priority: priority.value for priority in Priority}
#: Memory policies that never evict a key (anything else may delete a queue's list under memory pressure).
SAFE_POLICIES = ("noeviction",)


class BrokerUnreadable(errors.Unavailable):
    """The broker does not answer, so its figures or messages cannot be shown."""


class UnknownQueue(errors.NotFound):
    """The queue is not one of ``TASKCENTER_QUEUES``."""


# --- The Broker page -------------------------------------------------------------


@dataclass(frozen=True)
class QueueKeys:
    name: str
    by_priority: list[tuple[str, int]]  # (priority name, messages in its list)

    @property
    def total(self) -> int:
        return sum(count for _, count in self.by_priority)


@dataclass(frozen=True)
class BrokerOverview:
    """What the Broker page shows; ``warnings`` are risks to messages the operator should fix."""

    version: str
    server: str
    uptime_seconds: int | None
    connected_clients: int | None
    blocked_clients: int | None
    memory_used: str
    memory_peak: str
    memory_limit: str  # "" when unlimited
    memory_policy: str
    evicted_keys: int | None
    aof_enabled: bool | None
    aof_rewrite_status: str
    aof_rewrite_seconds: int | None
    aof_write_status: str
    rdb_save: str | None
    rdb_last_save: datetime | None
    rdb_save_status: str
    rdb_changes_since_save: int | None
    unacked: int
    unacked_index: int
    scheduled: int
    queues: list[QueueKeys]
    warnings: list[str] = field(default_factory=list)


def broker_overview() -> BrokerOverview:
    """The broker's version, memory, persistence, clients, unacknowledged messages and queue lists."""
    names = list(settings.TASKCENTER_QUEUES)
    try:
        status = broker.server_status(names)
    except broker.BROKER_ERRORS as exc:
        raise BrokerUnreadable(broker.broker_down_message(_("the broker's figures cannot be shown"))) from exc
    info = status.info
    maxmemory = _int(info.get("maxmemory"))
    last_save = _int(info.get("rdb_last_save_time"))
    overview = BrokerOverview(
        version=str(info.get("valkey_version") or info.get("redis_version") or "?"),
        server=str(info.get("server_name") or ("valkey" if "valkey_version" in info else "redis")),
        uptime_seconds=_int(info.get("uptime_in_seconds")),
        connected_clients=_int(info.get("connected_clients")),
        blocked_clients=_int(info.get("blocked_clients")),
        memory_used=str(info.get("used_memory_human") or info.get("used_memory") or "?"),
        memory_peak=str(info.get("used_memory_peak_human") or ""),
        memory_limit=str(info.get("maxmemory_human") or maxmemory) if maxmemory else "",
        memory_policy=str(info.get("maxmemory_policy") or ""),
        evicted_keys=_int(info.get("evicted_keys")),
        aof_enabled=None if "aof_enabled" not in info else bool(_int(info.get("aof_enabled"))),
        aof_rewrite_status=str(info.get("aof_last_bgrewrite_status") or ""),
        aof_rewrite_seconds=_int(info.get("aof_last_rewrite_time_sec")),
        aof_write_status=str(info.get("aof_last_write_status") or ""),
        rdb_save=status.rdb_save,
        rdb_last_save=datetime.fromtimestamp(last_save, UTC) if last_save else None,
        rdb_save_status=str(info.get("rdb_last_bgsave_status") or ""),
        rdb_changes_since_save=_int(info.get("rdb_changes_since_last_save")),
        unacked=status.unacked,
        unacked_index=status.unacked_index,
        scheduled=status.scheduled,
        queues=[
            QueueKeys(name, [(PRIORITY_NAMES[step], lengths.get(step, 0)) for step in REDIS_PRIORITY_STEPS])
            for name, lengths in status.list_lengths.items()
        ],
    )
    overview.warnings.extend(_warnings(overview))
    return overview


def _warnings(overview: BrokerOverview) -> list[str]:
    found = []
    if overview.aof_enabled is False:
        if overview.rdb_save == "":
            found.append(
                _(
                    "Persistence is off: the append-only file (AOF) is disabled and no snapshots are saved, "
                    "so every waiting message is lost when Redis restarts. Set appendonly yes."
                )
            )
        else:
            found.append(
                _(
                    "The append-only file (AOF) is off: messages sent since the last snapshot are lost when "
                    "Redis stops. Set appendonly yes."
                )
            )
    if overview.memory_policy and overview.memory_policy not in SAFE_POLICIES:
        found.append(
            _(
                "The memory policy %(policy)s can evict keys: when Redis is full it may delete a queue's list "
                "or kombu's unacknowledged messages. Set maxmemory-policy noeviction."
            )
            % {"policy": overview.memory_policy}
        )
    for status, what in ((overview.aof_rewrite_status, "AOF rewrite"), (overview.aof_write_status, "AOF write")):
        if status and status != "ok":
            found.append(_("The last %(what)s failed (%(status)s).") % {"what": what, "status": status})
    if overview.rdb_save_status and overview.rdb_save_status != "ok":
        found.append(_("The last snapshot (RDB save) failed (%(status)s).") % {"status": overview.rdb_save_status})
    return found


def _int(value) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


# --- The queue browser -----------------------------------------------------------


@dataclass
class QueueMessage:
    """One message as the queue browser shows it; ``readable`` False for one not sent as Celery's protocol 2."""

    id: str  # "<step>.<position>.<digest>": enough to find and remove exactly this payload
    priority: str
    position: int  # counted from the oldest message of its priority list (0 is served next)
    size: int
    readable: bool
    task_name: str = ""
    task_id: str = ""
    arguments: str = ""
    sent_at: float | None = None
    eta: str = ""
    run: Run | None = None
    age: float | None = None


@dataclass
class PriorityPage:
    priority: str
    step: int
    length: int
    messages: list[QueueMessage]


@dataclass
class QueueMessagesPage:
    queue: str
    offset: int
    limit: int
    priorities: list[PriorityPage]

    @property
    def has_more(self) -> bool:
        return any(p.length > self.offset + self.limit for p in self.priorities)

    @property
    def next_offset(self) -> int | None:
        return self.offset + self.limit if self.has_more else None

    @property
    def previous_offset(self) -> int | None:
        return max(0, self.offset - self.limit) if self.offset else None


def queue_require_configured(name: str) -> None:
    """Refuse (404) a queue that is not configured: the browser reads configured queues only."""
    if name not in settings.TASKCENTER_QUEUES:
        raise UnknownQueue(
            _("No queue is named %(name)s; configured queues: %(queues)s.")
            % {"name": repr(name)[:200], "queues": ", ".join(settings.TASKCENTER_QUEUES)}
        )


def queue_messages_page(*, name: str, offset: int = 0, limit: int = PAGE_SIZE) -> QueueMessagesPage:
    """The messages ``offset`` to ``offset + limit - 1`` (oldest first) of each priority list of queue ``name``."""
    queue_require_configured(name)
    offset = max(0, min(int(offset), MAX_OFFSET))
    limit = max(1, min(int(limit), PAGE_SIZE))
    try:
        window = broker.queue_window(name, offset=offset, limit=limit)
    except broker.BROKER_ERRORS as exc:
        raise BrokerUnreadable(broker.broker_down_message(_("the queue's messages cannot be shown"))) from exc
    pages = []
    for step in REDIS_PRIORITY_STEPS:
        length, raws = window.get(step, (0, []))
        messages = [message_describe(raw, step=step, position=offset + index) for index, raw in enumerate(raws)]
        pages.append(PriorityPage(priority=PRIORITY_NAMES[step], step=step, length=length, messages=messages))
    _attach_runs([m for page in pages for m in page.messages])
    return QueueMessagesPage(queue=name, offset=offset, limit=limit, priorities=pages)


def message_digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:32]


def message_describe(raw: bytes, *, step: int, position: int) -> QueueMessage:
    """What the browser shows of one raw message: task, id, masked arguments, send time; or "unreadable"."""
    message = QueueMessage(
        id=f"{step}.{position}.{message_digest(raw)}",
        priority=PRIORITY_NAMES.get(step, str(step)),
        position=position,
        size=len(raw),
        readable=False,
    )
    decoded = message_decode(raw)
    if decoded is None:
        return message
    headers, args, kwargs = decoded
    entry = catalogue.get_entry(headers["task"])
    args, kwargs, _real = secret_arguments.mask(entry, args, kwargs)
    try:
        arguments = json.dumps({"args": args, "kwargs": kwargs}, default=str, ensure_ascii=False)
    except (ValueError, RecursionError):
        arguments = "?"
    sent_at = broker.message_sent_at(headers)
    message.readable = True
    message.task_name = headers["task"]
    message.task_id = headers["id"]
    message.arguments = arguments if len(arguments) <= ARGUMENTS_SHOWN else arguments[:ARGUMENTS_SHOWN] + "…"
    message.sent_at = sent_at
    message.eta = str(headers.get("eta") or "")
    return message


def message_decode(raw: bytes) -> tuple[dict, list, dict] | None:
    """``(headers, args, kwargs)`` of a Celery protocol 2 message as kombu's Redis transport stores it; else None."""
    try:
        envelope = json.loads(raw)
        if not isinstance(envelope, dict):
            return None
        headers, properties, body = envelope.get("headers"), envelope.get("properties") or {}, envelope.get("body")
        if not isinstance(headers, dict) or not isinstance(properties, dict):
            return None
        if not (isinstance(headers.get("task"), str) and isinstance(headers.get("id"), str)):
            return None  # protocol 1 keeps the task in the body; another client's message has neither
        if envelope.get("content-type") != "application/json" or not isinstance(body, str):
            return None
        if properties.get("body_encoding") == "base64":
            body = base64.b64decode(body, validate=True).decode("utf-8")
        payload = json.loads(body)
    except (ValueError, TypeError, binascii.Error, RecursionError):
        return None
    if not (isinstance(payload, list) and len(payload) == 3):
        return None
    args, kwargs = payload[0], payload[1]
    if not isinstance(args, list) or not isinstance(kwargs, dict):
        return None
    return headers, args, kwargs


def _attach_runs(messages: list[QueueMessage]) -> None:
    """Link each message to its run (one query) and compute its age: send time, else the run's creation."""
    ids = {m.task_id for m in messages if m.task_id}
    runs = {run.task_result_id: run for run in Run.objects.filter(task_result_id__in=ids)} if ids else {}
    now = time.time()
    for message in messages:
        message.run = runs.get(message.task_id)
        sent = message.sent_at
        if sent is None and message.run is not None:
            sent = message.run.created_at.timestamp()
        message.age = max(0.0, now - sent) if sent is not None else None
