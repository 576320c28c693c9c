"""Actions on whole failure groups: re-run their failed runs, resolve or ignore them. Audited."""

import logging

from django.utils import timezone

from taskcenter.models import FailureGroup, Run, RunSource
from taskcenter.services.audit import Action, audit_record
from taskcenter.services.control import BulkRetryResult, runs_retry_bulk

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
        message=(
            f"Re-ran {len(result.launched)} run(s) of failure group {group.exception_type} "
            f"({group.fingerprint[:12]}); {len(result.refused)} refused."
        ),
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
        message=f"Failure group {group.exception_type} ({group.fingerprint[:12]}): {previous} -> {group.status}.",
        detail={"fingerprint": group.fingerprint, "from": previous, "to": group.status},
    )
    return group
