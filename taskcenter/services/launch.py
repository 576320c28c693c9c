"""Launch catalogued tasks: the one path that records and publishes a task for an operator.

Every entry point (pages, admin, commands, schedule "run now", re-runs, bulk
re-runs, batches and workflows) checks its launches with ``launch_prepare`` and
sends them with ``launches_publish``: record the runs, take their
de-duplication keys, publish, and roll back and audit on failure, in one place.
``run_launch`` does both for a single task.
"""

import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from celery import current_app
from celery.app.task import Task
from django.conf import settings
from django.db import models, transaction
from django.utils import timezone
from django.utils.translation import gettext

from taskcenter import arguments, catalogue, secret_arguments
from taskcenter.broker import BROKER_ERRORS, publishing_together
from taskcenter.catalogue import CatalogueEntry
from taskcenter.models import AuditEntry, Run, RunSource
from taskcenter.priorities import Priority
from taskcenter.rows import rows_insert, rows_insert_committed, rows_new
from taskcenter.safe_input import JSONInputError, check_json, has_utc_time
from taskcenter.services import dedup
from taskcenter.services.audit import Action, Outcome, audit_entry, audit_log, audit_record
from taskcenter.services.errors import Conflict, InvalidInput, NotFound, ServiceError, Unavailable
from taskcenter.services.recording import launch_publishing
from taskcenter.zones import local_text

logger = logging.getLogger(__name__)

#: How far in the past an ETA may lie before it is refused as a mistake.
ETA_PAST_TOLERANCE = timedelta(minutes=1)
#: Longest expiry accepted, in seconds (ten years): beyond it is a mistake, and far beyond it overflows.
MAX_EXPIRES_SECONDS = 10 * 365 * 24 * 3600


class NotLaunchable(NotFound):
    """The task name is not in the catalogue (or not registered with Celery)."""


class InvalidLaunch(InvalidInput):
    """The launch options or arguments are wrong; ``errors`` maps field to messages.

    ``arguments`` maps a task parameter to the messages about its value, so a
    typed form can show them on that parameter's field.
    """

    def __init__(self, errors: dict[str, list[str]], arguments: dict[str, list[str]] | None = None):
        super().__init__(errors=errors)
        self.arguments = arguments or {}


class DuplicateRun(Conflict):
    """A run with the same de-duplication key still waits or runs."""

    def __init__(self, existing: Run | None, key: str):
        self.existing = existing
        self.key = key
        if existing:
            message = gettext(
                "A run with de-duplication key %(key)s is still pending or running (run %(task_id)s, %(state)s)."
            )
            message %= {"key": repr(key), "task_id": existing.task_id, "state": existing.state}
        else:
            message = gettext("A run with de-duplication key %(key)s is still pending or running.") % {"key": repr(key)}
        super().__init__(message)


class BrokerUnavailable(Unavailable):
    """The broker did not accept the message; nothing was sent or recorded."""

    def __init__(self, message: str | None = None):
        super().__init__(
            message
            or gettext(
                "The message broker (Redis) is not reachable, so the task was not sent. "
                "Check that Redis is running, then launch again."
            )
        )


class FieldErrors(dict):
    """Messages per form field, collected while checking a launch."""

    def add(self, name: str, message: str) -> None:
        self.setdefault(name, []).append(message)


@dataclass
class PreparedLaunch:
    """A validated launch, ready to be recorded and published.

    ``args``/``kwargs`` are what the worker receives; ``masked_args``/``masked_kwargs``
    are what is stored and shown (secret arguments replaced by a mask), and
    ``sealed_secrets`` keeps the real secret values encrypted for a re-run.
    """

    entry: CatalogueEntry
    task: Task
    args: list
    kwargs: dict
    queue: str
    priority: Priority
    eta: datetime | None
    expires: datetime | None
    dedup_key: str = ""
    masked_args: list = field(default_factory=list)
    masked_kwargs: dict = field(default_factory=dict)
    sealed_secrets: str = ""
    task_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: Run fields of this launch alone (a re-run's ``retry_of``), and details for its audit entry.
    run_fields: dict = field(default_factory=dict)
    audit_detail: dict = field(default_factory=dict)
    #: The audit action of this launch in ``launches_publish_each`` (default: the call's ``action``).
    action: str = ""

    def message_options(self) -> dict:
        """Options for ``apply_async`` / a signature (secret arguments are masked by ``MaskingAMQP``)."""
        options = {
            "task_id": self.task_id,
            "queue": self.queue,
            "priority": self.priority.broker_priority,
            "eta": self.eta,
            "expires": self.expires,
        }
        return options

    def signature(self):
        """A Celery signature of this launch, for a group, chain or chord."""
        return self.task.signature(args=self.args, kwargs=self.kwargs, **self.message_options())

    def new_run(self, **fields) -> Run:
        """An unsaved Run describing this launch, with secret arguments masked."""
        return rows_new(
            Run,
            task_result_id=self.task_id,
            task_name=self.entry.name,
            queue=self.queue,
            priority=self.priority,
            args=self.masked_args,
            kwargs=self.masked_kwargs,
            secrets=self.sealed_secrets,
            eta=self.eta,
            expires=self.expires,
            dedup_key=self.dedup_key,
            **(fields | self.run_fields),
        )


def launch_prepare(
    *,
    task_name: str,
    args: list | None = None,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: Priority | str | None = None,
    countdown: int | None = None,
    eta: datetime | None = None,
    expires: int | datetime | None = None,
    dedup_key: str | None = None,
    leading_arguments: int = 0,
) -> PreparedLaunch:
    """Check a launch without sending it; raise ``NotLaunchable`` or ``InvalidLaunch``.

    Arguments must be plain JSON within the input limits, bind to the task's
    signature and fit its type hints. ``leading_arguments`` is how many
    positional arguments Celery prepends at run time (1 for a chain step after
    the first, or a chord callback). The de-duplication key is ``dedup_key``,
    or one derived from the arguments for a task declared with ``dedup=True``.
    """
    entry = catalogue.get_entry(task_name) if isinstance(task_name, str) else None
    task = current_app.tasks.get(task_name) if entry is not None else None
    if entry is None or task is None:
        raise NotLaunchable(gettext("No launchable task is named %(name)s.") % {"name": repr(task_name)})

    args = [] if args is None else args
    kwargs = {} if kwargs is None else kwargs
    queue = queue or entry.default_queue
    priority = priority or entry.priority
    errors = FieldErrors()
    argument_errors = _check_arguments(entry, args, kwargs, leading_arguments, errors)
    if not isinstance(queue, str) or queue not in settings.TASKCENTER_QUEUES:
        errors.add(
            "queue",
            gettext("Unknown queue %(queue)s; configured queues: %(queues)s.")
            % {"queue": repr(queue), "queues": ", ".join(settings.TASKCENTER_QUEUES)},
        )
    if not isinstance(priority, str) or priority not in Priority.__members__:
        errors.add(
            "priority",
            gettext("Unknown priority %(priority)s; use one of %(choices)s.")
            % {"priority": repr(priority), "choices": ", ".join(Priority.__members__)},
        )
    if dedup_key is not None and (not isinstance(dedup_key, str) or len(dedup_key) > 255):
        errors.add("dedup_key", gettext("A de-duplication key is a string of at most 255 characters."))
    now = timezone.now()
    eta = _check_start(countdown, eta, now, errors)
    expires = _check_expiry(expires, eta or now, now, errors)
    if errors:
        raise InvalidLaunch(dict(errors), argument_errors)
    key = (dedup_key or "").strip()
    if not key and entry.dedup:
        key = entry.dedup_key_for([None] * leading_arguments + args, kwargs)
    masked_args, masked_kwargs, secrets = secret_arguments.mask(entry, args, kwargs, leading=leading_arguments)
    return PreparedLaunch(
        entry=entry,
        task=task,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=Priority(priority),
        eta=eta,
        expires=expires,
        dedup_key=key,
        masked_args=masked_args,
        masked_kwargs=masked_kwargs,
        sealed_secrets=secret_arguments.seal(secrets),
    )


def launches_publish(
    *,
    launches: list[PreparedLaunch],
    send: Callable[[], object],
    launched_by,
    source: RunSource,
    action: str,
    target: str,
    run_fields: dict | None = None,
    group: models.Model | None = None,
    summary: str = "",
    detail: dict | None = None,
) -> tuple[list[Run], object]:
    """Record, de-duplicate, publish and audit prepared launches; return their runs and what ``send`` returned.

    The one publish path. The runs (and ``group``, an unsaved ``Batch`` or
    ``Workflow`` they belong to) and their audit entries (one per run, or one for
    the whole launch with ``summary``) are written first, in one transaction, so
    the runs are listed as PENDING before any worker sees them; then every
    de-duplication key is taken; then ``send()`` publishes them (``apply_async`` of
    a task or a canvas). If a key is held (``DuplicateRun``) or the broker does not
    take the messages (``BrokerUnavailable``), everything written is removed again
    and the refusal is audited instead.
    """
    user = launched_by if getattr(launched_by, "pk", None) else None
    fields = dict(run_fields or {})
    detail = dict(detail or {})
    audit = {"actor": launched_by, "action": action, "target": target}
    if len(launches) > 1:
        keys = [p.dedup_key for p in launches if p.dedup_key]
        if len(keys) != len(set(keys)):
            repeated = next(k for k in keys if keys.count(k) > 1)
            message = gettext("Two runs of this launch have the same de-duplication key %(key)s.") % {
                "key": repr(repeated)
            }
            error = InvalidLaunch({"dedup_key": [message]})
            audit_record(**audit, outcome=Outcome.REFUSED, message=str(error), detail=detail)
            raise error

    if group is None:
        runs = [p.new_run(source=source, launched_by=user, **fields) for p in launches]
        entries = _launch_entries(launches, audit, group, summary, detail)
        rows_insert_committed(runs, entries)  # BEGIN, one INSERT each (cached statements), COMMIT
    else:
        with transaction.atomic():
            group.launched_by = user
            group.save()
            fields[group._meta.model_name] = group
            detail[group._meta.model_name] = group.pk
            runs = [p.new_run(source=source, launched_by=user, **fields) for p in launches]
            entries = _launch_entries(launches, audit, group, summary, detail)
            rows_insert(runs)  # one INSERT of all the runs
            rows_insert(entries)

    claimed: list[PreparedLaunch] = []
    for prepared in launches:
        if not prepared.dedup_key:
            continue
        try:
            dedup.dedup_claim(key=prepared.dedup_key, task_id=prepared.task_id)
        except dedup.KeyHeld as held:
            _roll_back(launches, claimed, group, entries)
            error = DuplicateRun(held.holder, prepared.dedup_key)
            audit_record(**audit, outcome=Outcome.REFUSED, task_id=prepared.task_id, message=str(error), detail=detail)
            raise error from None
        claimed.append(prepared)

    try:
        with launch_publishing(p.task_id for p in launches):
            sent = send()
    except BROKER_ERRORS as exc:
        _roll_back(launches, claimed, group, entries)
        logger.warning("Launch of %s refused: broker unavailable (%s)", target, exc)
        error = BrokerUnavailable()
        audit_record(**audit, outcome=Outcome.ERROR, message=f"{error} ({exc})", detail=detail)
        raise error from exc
    except Exception as exc:
        _roll_back(launches, claimed, group, entries)  # nothing half-written for an unexpected failure either
        audit_record(
            **audit, outcome=Outcome.ERROR, message=gettext("Not sent: %(error)r") % {"error": exc}, detail=detail
        )
        raise

    for entry in entries:
        audit_log(entry)  # with the task id: the log line of a launch audited per run
    if summary and logger.isEnabledFor(logging.INFO):
        for p in launches:
            logger.info("Launched %s [%s] on %s at %s priority", p.entry.name, p.task_id, p.queue, p.priority)
    return runs, sent


def _launch_entries(launches, audit, group, summary, detail) -> list[AuditEntry]:
    """The unsaved audit entries of a launch that goes out: one per run, or one with ``summary``."""
    if summary:
        prefix = f"{str(group._meta.verbose_name).capitalize()} {group.pk}: " if group is not None else ""
        return [audit_entry(**audit, message=prefix + summary, detail=detail)]
    sent_to = gettext("%(task)s sent to %(queue)s at %(priority)s priority.")
    return [
        audit_entry(
            **audit,
            task_id=p.task_id,
            message=sent_to % {"task": p.entry.name, "queue": p.queue, "priority": p.priority},
            detail={"queue": p.queue, "priority": p.priority.value, "dedup_key": p.dedup_key} | detail | p.audit_detail,
        )
        for p in launches
    ]


def _roll_back(launches: list[PreparedLaunch], claimed: list[PreparedLaunch], group, entries) -> None:
    """Remove what a refused launch wrote: its runs, its batch or workflow, its audit entries, its keys."""
    with transaction.atomic():
        Run.objects.filter(task_result_id__in=[p.task_id for p in launches]).delete()
        if group is not None and group.pk:
            group.delete()
        AuditEntry.objects.filter(pk__in=[entry.pk for entry in entries if entry.pk]).delete()
    for prepared in claimed:
        dedup.dedup_release(key=prepared.dedup_key, task_id=prepared.task_id)


def launches_publish_each(
    *, launches: list[PreparedLaunch], launched_by, source: RunSource, action: str
) -> tuple[list[Run], list[tuple[PreparedLaunch, ServiceError]]]:
    """Record and publish independent launches in bulk; return the runs sent and the launches refused, with why.

    Each launch stands alone, as if ``launches_publish`` sent it by itself (its own
    de-duplication key, its own audit entry), but the runs and their entries are
    written with one INSERT each, in one transaction before anything is published,
    and the messages go out over one producer. A held key refuses that launch only;
    a broker that fails refuses the launch it failed on and every later one. What a
    refused launch wrote is removed again (one DELETE each for runs and entries).
    """
    if not launches:
        return [], []
    user = launched_by if getattr(launched_by, "pk", None) else None
    audit = {"actor": launched_by, "action": action}
    runs = [p.new_run(source=source, launched_by=user) for p in launches]
    entries = [
        _launch_entries([p], audit | {"target": p.entry.name, "action": p.action or action}, None, "", {})[0]
        for p in launches
    ]
    rows_insert_committed(runs, entries)

    refused: dict[int, ServiceError] = {}
    claimed: dict[int, PreparedLaunch] = {}
    for index, prepared in enumerate(launches):
        if not prepared.dedup_key:
            continue
        try:
            dedup.dedup_claim(key=prepared.dedup_key, task_id=prepared.task_id)
            claimed[index] = prepared
        except dedup.KeyHeld as held:
            refused[index] = DuplicateRun(held.holder, prepared.dedup_key)

    failure = None
    sent: set[int] = set()
    try:
        with launch_publishing(p.task_id for p in launches), current_app.producer_or_acquire() as producer:
            for index, p in enumerate(launches):
                if index not in refused:
                    p.task.apply_async(args=p.args, kwargs=p.kwargs, producer=producer, **p.message_options())
                    sent.add(index)
    except BROKER_ERRORS as exc:
        failure = exc
        logger.warning("Bulk launch stopped after %d of %d: broker unavailable (%s)", len(sent), len(launches), exc)
        error = BrokerUnavailable()
        for index in range(len(launches)):
            if index not in sent and index not in refused:
                refused[index] = error

    if refused:
        with transaction.atomic():
            Run.objects.filter(task_result_id__in=[launches[i].task_id for i in refused]).delete()
            AuditEntry.objects.filter(pk__in=[entries[i].pk for i in refused]).delete()
            notes = [
                audit_entry(**audit | {"action": p.action or action}, target=p.entry.name, outcome=Outcome.REFUSED,
                            task_id=p.task_id, message=str(error), detail=p.audit_detail)
                for p, error in ((launches[i], e) for i, e in refused.items())
                if not isinstance(error, BrokerUnavailable)
            ]  # fmt: skip
            if failure is not None:
                first = launches[min(i for i, e in refused.items() if isinstance(e, BrokerUnavailable))]
                notes.append(audit_entry(**audit, target=first.entry.name, outcome=Outcome.ERROR,
                                         message=f"{BrokerUnavailable()} ({failure})"))  # fmt: skip
            AuditEntry.objects.bulk_create(notes)
        for index in refused:
            if index in claimed:
                dedup.dedup_release(key=claimed[index].dedup_key, task_id=claimed[index].task_id)
        for entry in notes:
            audit_log(entry)
    for index in sorted(sent):
        audit_log(entries[index])
    return [runs[i] for i in sorted(sent)], [(launches[i], refused[i]) for i in sorted(refused)]


def run_launch(
    *,
    task_name: str,
    args: list | None = None,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: Priority | str | None = None,
    countdown: int | None = None,
    eta: datetime | None = None,
    expires: int | datetime | None = None,
    dedup_key: str | None = None,
    launched_by=None,
    source: RunSource = RunSource.CODE,
    retry_of: Run | None = None,
    periodic_task_name: str = "",
) -> Run:
    """Validate and publish a catalogued task; return its Run, visible as PENDING.

    Raises ``NotLaunchable`` for a name outside the catalogue, ``InvalidLaunch``
    for bad options or arguments, ``DuplicateRun`` when the de-duplication key is
    held by a run still pending or running, and ``BrokerUnavailable`` when the
    broker does not take the message within the bounded publish retries. Each
    launch that passes validation is written to the audit trail with its outcome.
    ``source`` says which entry point launched it (the page, the admin, a command...).
    """
    prepared = launch_prepare(
        task_name=task_name,
        args=args,
        kwargs=kwargs,
        queue=queue,
        priority=priority,
        countdown=countdown,
        eta=eta,
        expires=expires,
        dedup_key=dedup_key,
    )

    def send():
        with publishing_together() as producer:  # the message and its task-sent event in one round trip
            return prepared.task.apply_async(
                args=prepared.args, kwargs=prepared.kwargs, producer=producer, **prepared.message_options()
            )

    runs, _ = launches_publish(
        launches=[prepared],
        send=send,
        launched_by=launched_by,
        source=source,
        action=Action.RETRY if retry_of is not None else Action.LAUNCH,
        target=prepared.entry.name,
        run_fields={"retry_of": retry_of, "periodic_task_name": periodic_task_name},
        detail={"retry_of": retry_of.task_id} if retry_of is not None else {},
    )
    return runs[0]


def _check_arguments(entry, args, kwargs, leading_arguments, errors) -> dict[str, list[str]]:
    """Add argument errors to ``errors``; return the messages per task parameter."""
    if not isinstance(args, list):
        errors.add("args", gettext("Positional arguments must be a JSON list, e.g. [1, 2]."))
    if not isinstance(kwargs, dict):
        errors.add("kwargs", gettext('Keyword arguments must be a JSON object, e.g. {"name": "value"}.'))
    for name, value in (("args", args), ("kwargs", kwargs)):
        if name in errors:
            continue
        try:
            check_json(value)
        except JSONInputError as exc:
            errors.add(name, str(exc))
    if "args" in errors or "kwargs" in errors:
        return {}
    try:
        bound = entry.signature.bind(*([None] * leading_arguments), *args, **kwargs)
    except TypeError as exc:
        errors.add(
            "args" if args else "kwargs",
            gettext("Arguments do not fit %(signature)s: %(error)s.")
            % {"signature": entry.signature_text, "error": exc},
        )
        return {}
    by_argument: dict[str, list[str]] = {}
    problems = arguments.check_arguments(
        entry.signature,
        entry.type_hints,
        args,
        kwargs,
        leading=leading_arguments,
        secret=entry.secret,
        bound=bound,
    )
    for name, message in problems:
        base = name.split("[", 1)[0]
        errors.add("kwargs" if base in kwargs or name in kwargs else "args", message)
        by_argument.setdefault(base, []).append(message)
    return by_argument


def _check_start(countdown, eta, now, errors) -> datetime | None:
    """Return the ETA (None: as soon as possible), from a countdown or a time."""
    limit = settings.TASKCENTER_MAX_COUNTDOWN

    def beyond():  # translated only when a message needs it: a gettext costs about 3 µs
        return gettext(
            "is more than %(limit)s seconds ahead (TASKCENTER_MAX_COUNTDOWN); use a one-off (clocked) schedule instead."
        ) % {"limit": limit}

    if countdown is not None and eta is not None:
        errors.add("countdown", gettext("Give a countdown or an ETA, not both."))
        return None
    if countdown is not None:
        if isinstance(countdown, bool) or not isinstance(countdown, int):
            errors.add("countdown", gettext("Countdown must be a whole number of seconds."))
        elif countdown < 0:
            errors.add("countdown", gettext("Countdown cannot be negative."))
        elif countdown > limit:
            errors.add(
                "countdown",
                gettext("Countdown cannot exceed %(limit)s seconds: it %(beyond)s")
                % {"limit": limit, "beyond": beyond()},
            )
        else:
            return now + timedelta(seconds=countdown) if countdown else None
        return None
    if eta is None:
        return None
    if not isinstance(eta, datetime):
        errors.add("eta", gettext("ETA must be a date and time."))
        return None
    if has_utc_time(eta) and timezone.is_naive(eta):
        eta = timezone.make_aware(eta)
    if not has_utc_time(eta):
        errors.add("eta", gettext("ETA must be a date between the years 2 and 9998."))
        return None
    if eta < now - ETA_PAST_TOLERANCE:
        errors.add("eta", gettext("ETA %(eta)s is in the past.") % {"eta": local_text(eta)})
    elif eta > now + timedelta(seconds=limit):
        errors.add("eta", gettext("ETA %(eta)s %(beyond)s") % {"eta": local_text(eta), "beyond": beyond()})
    else:
        return eta
    return None


def _check_expiry(expires, start, now, errors) -> datetime | None:
    """Return when an unstarted run is dropped (None: never)."""
    if expires is None:
        return None
    if isinstance(expires, bool) or not isinstance(expires, int | datetime):
        errors.add("expires", gettext("Expiry must be a number of seconds or a date and time."))
        return None
    if isinstance(expires, int):
        if expires <= 0:
            errors.add("expires", gettext("Expiry must be a positive number of seconds."))
            return None
        if expires > MAX_EXPIRES_SECONDS:
            errors.add(
                "expires",
                gettext("Expiry cannot exceed %(limit)s seconds (ten years).") % {"limit": MAX_EXPIRES_SECONDS},
            )
            return None
        expires = now + timedelta(seconds=expires)
    else:
        if has_utc_time(expires) and timezone.is_naive(expires):
            expires = timezone.make_aware(expires)
        if not has_utc_time(expires):
            errors.add("expires", gettext("Expiry must be a date between the years 2 and 9998."))
            return None
    if expires <= start:
        errors.add("expires", gettext("Expiry must be later than the time the run may start."))
        return None
    return expires


def run_resend(run: Run, *, reason: str) -> bool:
    """Publish the message of a waiting ``run`` again, with the same task id; True when sent.

    For a run whose message left the broker without running (a worker killed between
    taking it off the queue and recording it unacknowledged, a key deleted by hand):
    the same run, not a re-run. Only catalogued tasks outside a workflow are sent
    again (a workflow step's message carries the rest of the workflow, which the run
    row does not keep); the caller records the others as lost. Raises broker errors.
    """
    entry = catalogue.get_entry(run.task_name)
    task = current_app.tasks.get(run.task_name) if entry is not None else None
    if task is None or run.workflow_id:
        return False
    try:
        args, kwargs = secret_arguments.restore(entry, run.args, run.kwargs, run.secrets)
    except secret_arguments.SecretUnavailable:
        return False
    options = {"task_id": run.task_id, "queue": run.queue, "priority": Priority(run.priority).broker_priority}
    if run.expires:
        options["expires"] = run.expires
    with launch_publishing([run.task_id]):
        task.apply_async(args=args, kwargs=kwargs, **options)
    audit_record(
        actor=None, action=Action.RUN_RECOVER, target=run.task_name, task_id=run.task_id,
        message=gettext("Sent again to queue %(queue)s: %(reason)s.") % {"queue": run.queue, "reason": reason},
        detail={"queue": run.queue, "reason": reason},
    )  # fmt: skip
    logger.warning("Sent %s [%s] again to %s: %s", run.task_name, run.task_id, run.queue, reason)
    return True
