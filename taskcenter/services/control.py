"""Cancel, terminate and re-run runs.

Cancelling a run that waits in the scheduled set (a countdown, an ETA, a retry's
backoff) takes it out of the set: it is never published. Cancelling any other
waiting run broadcasts a revoke to the workers online *and* keeps
the task id in a Redis sorted set that every worker loads into its revoked list
when it starts, so the run never runs even if the worker that would have taken
it restarts (worker revokes live in memory only).
"""

import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from celery import current_app
from django.conf import settings
from django.utils import timezone
from django.utils.translation import gettext as _

from taskcenter import catalogue, scheduled_set, secret_arguments
from taskcenter.broker import BROKER_ERRORS, broker_client
from taskcenter.models import Run, RunSource
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.errors import Conflict, ServiceError
from taskcenter.services.launch import (
    BrokerUnavailable,
    InvalidLaunch,
    PreparedLaunch,
    launch_prepare,
    launches_publish_each,
    run_launch,
)

logger = logging.getLogger(__name__)

#: Redis sorted set of revoked task ids, scored by the time of the revoke.
REVOKED_KEY = "taskcenter:revoked"
WAITING_STATES = ("PENDING", "RECEIVED", "RETRY")


class ControlError(Conflict):
    """An action on a run was refused: the run is not in a state that allows it."""


def run_cancel(*, run: Run, actor) -> None:
    """Revoke a run that has not started: it is dropped by whichever worker receives it."""
    state = run.state
    audit = {"actor": actor, "action": Action.CANCEL, "target": run.task_name, "task_id": run.task_id}
    if state not in WAITING_STATES or run.cancelled_at:
        refusal = (
            _("Run %(id)s is %(state)s; only waiting runs can be cancelled (terminate a started run instead).")
            if state == "STARTED"
            else _("Run %(id)s is %(state)s; only waiting runs can be cancelled.")
        )
        error = ControlError(refusal % {"id": run.task_id, "state": state})
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    try:
        with broker_client() as client:
            held = scheduled_set.cancel(client, run.task_id)
        revoked_store_add(run.task_id)
        current_app.control.revoke(run.task_id)
    except BROKER_ERRORS as exc:
        audit_record(**audit, outcome=Outcome.ERROR, message=_("Broker unavailable: %(error)s") % {"error": exc})
        raise BrokerUnavailable(_("The broker (Redis) is not reachable, so the run was not cancelled.")) from exc
    if held:  # never published, so no worker will record it revoked
        current_app.backend.mark_as_revoked(run.task_id, reason="cancelled before it started")
    _mark_cancelled(run, actor, _("cancelled before it started"))
    audit_record(
        **audit,
        message=_("Taken out of the scheduled set before it was due.") if held else _("Revoked before it started."),
    )


def run_terminate(*, run: Run, actor) -> None:
    """Stop a started run by signalling the process that runs it."""
    state = run.state
    signal_name = settings.TASKCENTER_TERMINATE_SIGNAL
    audit = {"actor": actor, "action": Action.TERMINATE, "target": run.task_name, "task_id": run.task_id}
    if state != "STARTED":
        error = ControlError(
            _("Run %(id)s is %(state)s; only started runs can be terminated.") % {"id": run.task_id, "state": state}
        )
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    try:
        revoked_store_add(run.task_id)  # a redelivered copy must not run again either
        current_app.control.revoke(run.task_id, terminate=True, signal=signal_name)
    except BROKER_ERRORS as exc:
        audit_record(**audit, outcome=Outcome.ERROR, message=_("Broker unavailable: %(error)s") % {"error": exc})
        raise BrokerUnavailable(_("The broker (Redis) is not reachable, so the run was not terminated.")) from exc
    _mark_cancelled(run, actor, _("terminated with %(signal)s") % {"signal": signal_name})
    audit_record(
        **audit, message=_("Terminated with %(signal)s.") % {"signal": signal_name}, detail={"signal": signal_name}
    )


def run_retry(
    *,
    run: Run,
    actor,
    args: list | None = None,
    kwargs: dict | None = None,
    source: RunSource = RunSource.CODE,
    orphaned: bool = False,
) -> Run:
    """Launch a finished run again, with its own or edited arguments; link the two.

    Secret arguments are stored masked; wherever the arguments still hold the
    mask, the run's sealed real value is sent again (a changed value is kept).
    ``orphaned``: the run is still STARTED but its worker is gone (the recovery
    service checked that), so it may be launched again although it never finished.
    """
    args, kwargs = _retry_arguments(run=run, actor=actor, args=args, kwargs=kwargs, orphaned=orphaned)
    return run_launch(
        task_name=run.task_name,
        args=args,
        kwargs=kwargs,
        queue=run.queue,
        priority=run.priority,
        launched_by=actor,
        source=source,
        retry_of=run,
    )


def _retry_arguments(
    *, run: Run, actor, args: list | None = None, kwargs: dict | None = None, orphaned: bool = False
) -> tuple[list, dict]:
    """The arguments to re-run ``run`` with (its sealed secrets restored); refuse, audited, a run not finished."""
    audit = {"actor": actor, "action": Action.RETRY, "target": run.task_name, "task_id": run.task_id}
    if not (orphaned or run.is_finished):
        error = ControlError(
            _("Run %(id)s is %(state)s; only finished runs can be re-run.") % {"id": run.task_id, "state": run.state}
        )
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    args = run.args if args is None else args
    kwargs = run.kwargs if kwargs is None else kwargs
    try:
        return secret_arguments.restore(catalogue.get_entry(run.task_name), args, kwargs, run.secrets)
    except secret_arguments.SecretUnavailable as missing:
        error = InvalidLaunch(
            {"kwargs" if missing.name in kwargs else "args": [
                _("The stored value of the secret argument %(name)s cannot be read; enter it again.")
                % {"name": repr(missing.name)}
            ]}
        )  # fmt: skip
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error from None


def run_retry_prepare(*, run: Run, actor, args: list | None = None, kwargs: dict | None = None) -> PreparedLaunch:
    """Check a re-run of ``run`` as ``run_retry`` does, without sending it: for ``launches_publish_each``."""
    args, kwargs = _retry_arguments(run=run, actor=actor, args=args, kwargs=kwargs)
    launch = launch_prepare(task_name=run.task_name, args=args, kwargs=kwargs, queue=run.queue, priority=run.priority)
    launch.run_fields = {"retry_of": run}
    launch.audit_detail = {"retry_of": run.task_id}
    launch.action = Action.RETRY
    return launch


@dataclass
class BulkRetryResult:
    launched: list[Run] = field(default_factory=list)
    refused: list[tuple[Run, str]] = field(default_factory=list)


def runs_retry_bulk(*, runs: Iterable[Run], actor, source: RunSource = RunSource.CODE) -> BulkRetryResult:
    """Re-run each finished run with its own arguments; report what was refused and why.

    Each re-run is checked and audited as ``run_retry`` does, but the new runs and
    their audit entries are written in bulk (``launches_publish_each``): the queries
    do not grow with the number of runs. A broker that is down stops the whole batch
    at once: the runs not yet re-run are reported as refused with its message.
    """
    runs = list(runs)
    outcome: dict[int, Run | str] = {}
    prepared: list[PreparedLaunch] = []
    origin: dict[str, int] = {}
    for index, run in enumerate(runs):
        try:
            launch = run_retry_prepare(run=run, actor=actor)
        except ServiceError as exc:
            outcome[index] = str(exc)
            continue
        prepared.append(launch)
        origin[launch.task_id] = index
    launched, refused = launches_publish_each(launches=prepared, launched_by=actor, source=source, action=Action.RETRY)
    for new_run in launched:
        outcome[origin[new_run.task_id]] = new_run
    for launch, error in refused:
        outcome[origin[launch.task_id]] = str(error)
    result = BulkRetryResult()
    for index, run in enumerate(runs):
        done = outcome[index]
        if isinstance(done, Run):
            result.launched.append(done)
        else:
            result.refused.append((run, done))
    return result


def _mark_cancelled(run: Run, actor, reason: str) -> None:
    fields = ["cancelled_at", "cancelled_by", "cancel_reason"]
    if run.state != "STARTED":  # it will never run; a terminated run's end is reported by its worker
        run.recorded_state, run.recorded_finished_at = "REVOKED", timezone.now()
        fields += ["recorded_state", "recorded_finished_at"]
    run.cancelled_at = timezone.now()
    run.cancelled_by = actor if getattr(actor, "pk", None) else None
    run.cancel_reason = reason
    run.save(update_fields=fields)


# --- The persistent revoked list -------------------------------------------------


def _revoke_retention() -> int:
    """Seconds a revoke is kept: as long as its message can still be delivered.

    A run that waits in the scheduled set is taken out of it when cancelled; the revoke
    is for a message already published (or being published by a pump) that a worker may
    still receive, until the visibility timeout has passed.
    """
    from taskcenter.scheduled_set import STALE_CLAIM_SECONDS

    return settings.BROKER_VISIBILITY_TIMEOUT + STALE_CLAIM_SECONDS + 60


def revoked_store_add(task_id: str) -> None:
    """Remember a revoked task id in Redis (survives worker restarts)."""
    with broker_client() as client:
        now = time.time()
        pipe = client.pipeline()
        pipe.zadd(REVOKED_KEY, {task_id: now})
        pipe.zremrangebyscore(REVOKED_KEY, "-inf", now - _revoke_retention())
        pipe.execute()


def revoked_store_ids() -> list[str]:
    """Task ids revoked within the retention period."""
    with broker_client() as client:
        ids = client.zrangebyscore(REVOKED_KEY, time.time() - _revoke_retention(), "+inf")
    return [i.decode() if isinstance(i, bytes) else i for i in ids]


def revoked_store_load_into_worker() -> int:
    """Add every stored revoke to this worker's revoked list; called when a worker starts."""
    from celery.worker import state as worker_state

    try:
        ids = revoked_store_ids()
    except BROKER_ERRORS:
        logger.exception("Could not load revoked task ids from the broker")
        return 0
    for task_id in ids:
        worker_state.revoked.add(task_id)
    logger.info("Loaded %d revoked task id(s) from %s", len(ids), REVOKED_KEY)
    return len(ids)


def run_delete(*, run: Run, actor) -> None:
    """Delete the record of a finished run (its Run and result rows); a waiting or running run is refused."""
    from django_celery_results.models import TaskResult

    audit = {"actor": actor, "action": Action.RUN_DELETE, "target": run.task_name, "task_id": run.task_id}
    if not run.is_finished:
        error = ControlError(
            _("Run %(id)s is %(state)s; only a finished run's record can be deleted.")
            % {"id": run.task_id, "state": run.state}
        )
        audit_record(**audit, outcome=Outcome.REFUSED, message=str(error))
        raise error
    state = run.state
    TaskResult.objects.filter(task_id=run.task_id).delete()
    Run.objects.filter(pk=run.pk).delete()
    audit_record(
        **audit, message=_("Deleted the record of a %(state)s run.") % {"state": state}, detail={"state": state}
    )
