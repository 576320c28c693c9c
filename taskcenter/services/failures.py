"""Actions on whole failure groups: re-run their failed runs, apply a recovery strategy to them,
dead-letter them, resolve or ignore them. Audited."""

import logging

from django.utils import timezone
from django.utils.translation import gettext

from taskcenter.models import DeadLetter, FailureGroup, Run, RunSource
from taskcenter.services.audit import Action, audit_record
from taskcenter.services.control import BulkRetryResult, runs_retry_bulk
from taskcenter.services.deadletters import deadletter_record
from taskcenter.services.recovery import BulkRecoveryResult, runs_recover_bulk

logger = logging.getLogger(__name__)


def failure_group_retry(
    *, group: FailureGroup, runs: list[Run], actor, source: RunSource = RunSource.CODE
) -> BulkRetryResult:
    """Re-run ``runs`` of ``group`` (each audited as a retry) and record the group action."""
    result = runs_retry_bulk(runs=runs, actor=actor, source=source)
    audit_record(
        actor=actor,
        action=Action.FAILURES_RETRY,
        target=group.task_name,
        message=gettext("Re-ran %(count)s run(s) of failure group %(group)s (%(fingerprint)s); %(refused)s refused.")
        % {
            "count": len(result.launched),
            "group": group.exception_type,
            "fingerprint": group.fingerprint[:12],
            "refused": len(result.refused),
        },
        detail={
            "fingerprint": group.fingerprint,
            "launched": len(result.launched),
            "refused": len(result.refused),
        },
    )
    return result


def failure_group_set_status(*, group: FailureGroup, status: str, actor) -> FailureGroup:
    """Mark ``group`` open, resolved or ignored; a resolved group opens again when it fails again."""
    previous = group.status
    group.status = FailureGroup.Status(status)
    group.status_changed_by = actor if getattr(actor, "pk", None) else None
    group.status_changed_at = timezone.now()
    group.save(update_fields=["status", "status_changed_by", "status_changed_at"])
    audit_record(
        actor=actor,
        action=Action.FAILURES_STATUS,
        target=group.task_name,
        message=gettext("Failure group %(group)s (%(fingerprint)s): %(previous)s -> %(status)s.")
        % {
            "group": group.exception_type,
            "fingerprint": group.fingerprint[:12],
            "previous": previous,
            "status": group.status,
        },  # fmt: skip
        detail={"fingerprint": group.fingerprint, "from": previous, "to": group.status},
    )
    return group


def failure_group_recover(
    *, group: FailureGroup, runs: list[Run], strategy: str, actor, source: RunSource = RunSource.CODE
) -> BulkRecoveryResult:
    """Apply ``strategy`` to each of ``runs`` (each audited by ``run_recover``) and record the group action."""
    result = runs_recover_bulk(runs=runs, strategy=strategy, actor=actor, source=source)
    audit_record(
        actor=actor,
        action=Action.FAILURES_RECOVER,
        target=group.task_name,
        message=gettext(
            "%(strategy)s applied to %(count)s run(s) of failure group %(group)s (%(fingerprint)s); "
            "%(refused)s refused."
        )
        % {
            "strategy": strategy,
            "count": len(result.done),
            "group": group.exception_type,
            "fingerprint": group.fingerprint[:12],
            "refused": len(result.refused),
        },  # fmt: skip
        detail={
            "fingerprint": group.fingerprint,
            "strategy": strategy,
            "done": len(result.done),
            "refused": len(result.refused),
        },
    )
    return result


def failure_group_deadletter(*, group: FailureGroup, runs: list[Run], actor) -> int:
    """Give each of ``runs`` a dead letter (reason "failed"); return how many were recorded."""
    recorded = 0
    for run in runs:
        result = run.task_result
        letter = deadletter_record(
            task_id=run.task_id,
            task_name=run.task_name,
            reason=DeadLetter.Reason.FAILED,
            queue=run.queue,
            message=run.outcome or group.sample_exception,
            traceback=(result.traceback if result is not None else "") or "",
            worker=run.worker,
        )
        if letter is not None:
            if not letter.exception_type:
                DeadLetter.objects.filter(pk=letter.pk).update(exception_type=group.exception_type[:255])
            recorded += 1
    audit_record(
        actor=actor,
        action=Action.FAILURES_DEADLETTER,
        target=group.task_name,
        message=(
            gettext("Dead-lettered %(count)s run(s) of failure group %(group)s (%(fingerprint)s).")
            if recorded == len(runs)
            else gettext(
                "Dead-lettered %(count)s run(s) of failure group %(group)s (%(fingerprint)s); "
                "%(missed)s could not be recorded."
            )
        )
        % {
            "count": recorded,
            "group": group.exception_type,
            "fingerprint": group.fingerprint[:12],
            "missed": len(runs) - recorded,
        },  # fmt: skip
        detail={"fingerprint": group.fingerprint, "recorded": recorded, "runs": len(runs)},
    )
    logger.info("Dead-lettered %d run(s) of failure group %s", recorded, group.fingerprint)
    return recorded
