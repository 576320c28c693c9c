"""The audit trail: one row per operator action, whatever the outcome."""

import logging

from taskcenter.models import AuditEntry

logger = logging.getLogger(__name__)

Action = AuditEntry.Action
Outcome = AuditEntry.Outcome


def audit_record(
    *,
    actor,
    action: str,
    target: str,
    outcome: str = Outcome.OK,
    message: str = "",
    task_id: str = "",
    detail: dict | None = None,
) -> AuditEntry:
    """Record one action. ``actor`` may be None for actions of the system itself."""
    entry = AuditEntry.objects.create(
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        target=target[:255],
        outcome=outcome,
        message=message,
        task_id=task_id,
        detail=detail or {},
    )
    logger.info("audit: %s %s %s -> %s %s", entry.actor, action, target, outcome, message)
    return entry
