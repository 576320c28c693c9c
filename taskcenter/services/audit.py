"""The audit trail: one row per operator action, whatever the outcome."""

import logging
from contextlib import contextmanager
from contextvars import ContextVar

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
        detail={**_context.get(), **(detail or {})},
    )
    logger.info("audit: %s %s %s -> %s %s", entry.actor, action, target, outcome, message)
    return entry


#: Detail added to every entry recorded inside ``audit_context`` (e.g. the entry point).
_context: ContextVar[dict] = ContextVar("taskcenter_audit_context", default={})  # noqa: B039 (never mutated)


@contextmanager
def audit_context(**detail):
    """Add ``detail`` (e.g. ``source="cli"``) to every audit entry recorded in the block."""
    token = _context.set({**_context.get(), **detail})
    try:
        yield
    finally:
        _context.reset(token)
