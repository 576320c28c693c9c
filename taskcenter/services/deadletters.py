"""Dead letters: record runs that will not run again by themselves; replay or discard them.

Written by the worker, on failure paths only (a successful task costs nothing
more): Celery's ``task_failure`` signal (sent for a final failure only, a retry
raises ``Retry`` instead), ``task_revoked`` with ``expired=True``, and the message
guard's ``refuse`` (``taskcenter.worker``). See docs/operations.md, "Dead letters".
"""

import logging
import traceback as traceback_module
from collections.abc import Iterable
from dataclasses import dataclass, field

from django.db import DatabaseError, connection, transaction
from django.utils import timezone
from django.utils.translation import gettext

from taskcenter import catalogue, secret_arguments
from taskcenter.models import DeadLetter, DeadLetterTotal, Run, RunSource
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import Conflict, ServiceError

logger = logging.getLogger(__name__)

Reason = DeadLetter.Reason
#: Characters of an exception message kept.
MESSAGE_LENGTH = 2000
#: Characters of a traceback kept (its end, where the error is).
TRACEBACK_LENGTH = 20000


def _count(letter: DeadLetter) -> None:
    """Add the letter to its reason and task's counter (one upsert; SQLite and PostgreSQL)."""
    quote = connection.ops.quote_name
    table = quote(DeadLetterTotal._meta.db_table)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} ({quote('reason')}, {quote('task_name')}, {quote('total')}) VALUES (%s, %s, 1) "
            f"ON CONFLICT ({quote('reason')}, {quote('task_name')}) DO UPDATE SET {quote('total')} = "
            f"{table}.{quote('total')} + 1",
            [letter.reason, letter.task_name],
        )


class DeadLetterResolved(Conflict):
    """The dead letter was already replayed or discarded."""


def deadletter_record(
    *,
    task_id: str | None,
    task_name: str | None,
    reason: str,
    queue: str | None = "",
    exception=None,
    message: str = "",
    traceback: str = "",
    args=None,
    kwargs=None,
    worker: str | None = "",
) -> DeadLetter | None:
    """Keep one dead letter; secret arguments are masked. Never raises (called from a worker)."""
    try:
        args = list(args) if isinstance(args, list | tuple) else []
        kwargs = dict(kwargs) if isinstance(kwargs, dict) else {}
        run = (
            Run.objects.filter(task_result_id=task_id).only("args", "kwargs", "queue", "secrets").first()
            if task_id
            else None
        )
        if run is not None:  # the run's copy is masked already, and is what an operator launched
            args, kwargs, sealed = run.args, run.kwargs, run.secrets
            queue = queue or run.queue
        else:
            args, kwargs, real = secret_arguments.mask(catalogue.get_entry(task_name or ""), args, kwargs)
            sealed = secret_arguments.seal(real)
        if exception is not None:
            message = message or str(exception)
        with transaction.atomic():
            letter = DeadLetter.objects.create(
                task_id=(task_id or "")[:255],
                task_name=(task_name or "")[:255],
                queue=(queue or "")[:200],
                reason=reason,
                exception_type=type(exception).__name__[:255] if exception is not None else "",
                message=message[:MESSAGE_LENGTH],
                traceback=(traceback or "")[-TRACEBACK_LENGTH:],
                args=args,
                kwargs=kwargs,
                secrets=sealed,
                worker=(worker or "")[:255],
            )
            _count(letter)
        return letter
    except (DatabaseError, TypeError, ValueError):
        logger.exception("Could not record the dead letter of task %s (%s)", task_id, reason)
        return None


def format_traceback(exception, tb) -> str:
    """The text of a traceback object, or an empty string."""
    if tb is None:
        return ""
    try:
        return "".join(traceback_module.format_exception(type(exception), exception, tb))
    except Exception:  # noqa: BLE001 (a dead letter without its traceback is better than none)
        return ""


def deadletter_replay(
    *, letter: DeadLetter, actor, args: list | None = None, kwargs: dict | None = None, source=RunSource.CODE
) -> Run:
    """Launch a dead letter's task again, with its own or edited arguments; mark it replayed.

    Goes through the one launch path: ``run_retry`` when the original run is known
    (linked to it, its sealed secrets sent again), else ``run_launch``.
    """
    from taskcenter.services.control import run_retry
    from taskcenter.services.launch import run_launch

    audit = {"actor": actor, "action": Action.DEADLETTER_REPLAY, "target": letter.task_name, "task_id": letter.task_id}
    # Claim it first, so two operators cannot replay the same letter twice.
    claimed = DeadLetter.objects.filter(pk=letter.pk, resolution="").update(
        resolution=DeadLetter.Resolution.REPLAYED,
        resolved_by=actor if getattr(actor, "pk", None) else None,
        resolved_at=timezone.now(),
    )
    if not claimed:
        error = DeadLetterResolved(gettext("Dead letter %(id)s was already replayed or discarded.") % {"id": letter.pk})
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    args = letter.args if args is None else args
    kwargs = letter.kwargs if kwargs is None else kwargs
    run = Run.objects.filter(task_result_id=letter.task_id).first() if letter.task_id else None
    try:
        args, kwargs = _with_secrets(letter, args, kwargs)
        if run is not None and run.is_finished:
            new_run = run_retry(run=run, actor=actor, args=args, kwargs=kwargs, source=source)
        else:
            new_run = run_launch(
                task_name=letter.task_name,
                args=args,
                kwargs=kwargs,
                queue=letter.queue or None,
                launched_by=actor,
                source=source,
                retry_of=run,
            )
    except ServiceError as exc:
        DeadLetter.objects.filter(pk=letter.pk).update(resolution="", resolved_by=None, resolved_at=None)
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(exc))
        raise
    DeadLetter.objects.filter(pk=letter.pk).update(replayed_as=new_run.task_id)
    letter.refresh_from_db()
    audit_record(
        **audit,
        message=gettext("Replayed as %(task_id)s.") % {"task_id": new_run.task_id},
        detail={"dead_letter": letter.pk, "run": new_run.task_id},
    )
    return new_run


def _with_secrets(letter: DeadLetter, args, kwargs) -> tuple:
    """Put the sealed real values back where a secret argument still holds the mask."""
    from taskcenter.services.launch import InvalidLaunch

    try:
        return secret_arguments.restore(catalogue.get_entry(letter.task_name), args, kwargs, letter.secrets)
    except secret_arguments.SecretUnavailable as missing:
        field = "kwargs" if isinstance(kwargs, dict) and missing.name in kwargs else "args"
        raise InvalidLaunch(
            {
                field: [
                    gettext("The stored value of the secret argument %(name)s cannot be read; enter it again.")
                    % {"name": repr(missing.name)}
                ]
            }
        ) from None


def deadletter_discard(*, letter: DeadLetter, actor) -> None:
    """Mark a dead letter discarded: nothing is run."""
    audit = {"actor": actor, "action": Action.DEADLETTER_DISCARD, "target": letter.task_name, "task_id": letter.task_id}
    discarded = DeadLetter.objects.filter(pk=letter.pk, resolution="").update(
        resolution=DeadLetter.Resolution.DISCARDED,
        resolved_by=actor if getattr(actor, "pk", None) else None,
        resolved_at=timezone.now(),
    )
    if not discarded:
        error = DeadLetterResolved(gettext("Dead letter %(id)s was already replayed or discarded.") % {"id": letter.pk})
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    audit_record(**audit, message=gettext("Discarded."), detail={"dead_letter": letter.pk})


@dataclass
class BulkResult:
    done: list[DeadLetter] = field(default_factory=list)
    refused: list[tuple[DeadLetter, str]] = field(default_factory=list)


def deadletters_replay_bulk(*, letters: Iterable[DeadLetter], actor, source=RunSource.CODE) -> BulkResult:
    """Replay each dead letter with its own arguments; a broker that is down stops the batch.

    Each letter is replayed as ``deadletter_replay`` would, but in bulk, so the
    queries do not grow with the number of letters: one UPDATE claims them, one
    query reads their runs, the new runs and their audit entries are written with
    one INSERT each (``launches_publish_each``), then one UPDATE records what each
    was replayed as and one INSERT the replay entries.
    """
    from taskcenter.rows import rows_insert
    from taskcenter.services.audit import audit_entry, audit_log
    from taskcenter.services.control import run_retry_prepare
    from taskcenter.services.launch import launch_prepare, launches_publish_each

    letters = list(letters)
    user = actor if getattr(actor, "pk", None) else None
    now = timezone.now()
    with transaction.atomic():  # claimed first, so two operators cannot replay the same letter twice
        claimed = set(
            DeadLetter.objects.select_for_update()
            .filter(pk__in=[letter.pk for letter in letters], resolution="")
            .values_list("pk", flat=True)
        )
        DeadLetter.objects.filter(pk__in=claimed).update(
            resolution=DeadLetter.Resolution.REPLAYED, resolved_by=user, resolved_at=now
        )
    task_ids = [letter.task_id for letter in letters if letter.task_id]
    runs = {r.task_id: r for r in Run.objects.filter(task_result_id__in=task_ids).select_related("task_result")}
    refused: dict[int, str] = {}
    prepared, origin = [], {}
    for index, letter in enumerate(letters):
        if letter.pk not in claimed:
            refused[index] = str(
                DeadLetterResolved(gettext("Dead letter %(id)s was already replayed or discarded.") % {"id": letter.pk})
            )
            continue
        run = runs.get(letter.task_id) if letter.task_id else None
        try:
            args, kwargs = _with_secrets(letter, letter.args, letter.kwargs)
            if run is not None and run.is_finished:
                launch = run_retry_prepare(run=run, actor=actor, args=args, kwargs=kwargs)
            else:
                queue = letter.queue or None
                launch = launch_prepare(task_name=letter.task_name, args=args, kwargs=kwargs, queue=queue)
                if run is not None:
                    launch.run_fields, launch.audit_detail = {"retry_of": run}, {"retry_of": run.task_id}
                    launch.action = Action.RETRY
        except ServiceError as exc:
            refused[index] = str(exc)
            continue
        prepared.append(launch)
        origin[launch.task_id] = index
    launched, not_sent = launches_publish_each(
        launches=prepared, launched_by=actor, source=source, action=Action.LAUNCH
    )
    refused.update((origin[launch.task_id], str(error)) for launch, error in not_sent)
    replayed = {origin[new_run.task_id]: new_run for new_run in launched}

    entries = []
    for index, letter in enumerate(letters):
        audit = {"actor": actor, "action": Action.DEADLETTER_REPLAY, "target": letter.task_name}
        audit["task_id"] = letter.task_id
        if index in refused:
            entries.append(audit_entry(**audit, outcome=Outcome.REFUSED, message=refused[index]))
        else:
            new_id = replayed[index].task_id
            letter.replayed_as = new_id
            detail = {"dead_letter": letter.pk, "run": new_id}
            entries.append(
                audit_entry(**audit, message=gettext("Replayed as %(task_id)s.") % {"task_id": new_id}, detail=detail)
            )
    with transaction.atomic():
        unclaim = [letters[i].pk for i in refused if letters[i].pk in claimed]
        DeadLetter.objects.filter(pk__in=unclaim).update(resolution="", resolved_by=None, resolved_at=None)
        DeadLetter.objects.bulk_update([letters[i] for i in replayed], ["replayed_as"], batch_size=1000)
        rows_insert(entries)
    for entry in entries:
        audit_log(entry)

    result = BulkResult()
    for index, letter in enumerate(letters):
        if index in refused:
            result.refused.append((letter, refused[index]))
        else:
            letter.resolution, letter.resolved_by, letter.resolved_at = DeadLetter.Resolution.REPLAYED, user, now
            result.done.append(letter)
    return result


def deadletters_discard_bulk(*, letters: Iterable[DeadLetter], actor) -> BulkResult:
    """Discard each dead letter; those already resolved are reported as refused."""
    result = BulkResult()
    for letter in letters:
        try:
            deadletter_discard(letter=letter, actor=actor)
            result.done.append(letter)
        except ServiceError as exc:
            result.refused.append((letter, str(exc)))
    return result
