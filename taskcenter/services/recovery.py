"""Records of the recovery of lost task messages (see taskcenter.recovery): one audit entry per run given back."""

import logging

from taskcenter.models import AuditEntry

logger = logging.getLogger(__name__)


def recovery_record(*, restored: list) -> int:
    """Audit each run whose message the monitor gave back (``taskcenter.recovery.Restored``), in one INSERT."""
    entries = [
        AuditEntry(
            actor=None,
            action=AuditEntry.Action.RUN_RECOVER,
            target=item.task_id[:255],
            task_id=item.task_id[:255],
            message=f"Given back to queue {item.queue}: {item.reason} (last held by {item.holder or 'unknown'}).",
            detail={"queue": item.queue, "reason": item.reason, "holder": item.holder},
        )
        for item in restored
    ]
    AuditEntry.objects.bulk_create(entries)
    return len(entries)
