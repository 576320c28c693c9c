"""The audit trail: one row per operator action, whatever the outcome."""

import logging
from contextlib import contextmanager
from contextvars import ContextVar

from taskcenter.models import AuditEntry

logger = logging.getLogger(__name__)

Action = AuditEntry.Action
Outcome = AuditEntry.Outcome

#: Details added to every entry recorded in the current context (e.g. the API token acting).
_context: ContextVar[dict | None] = ContextVar("taskcenter_audit_context", default=None)


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
    context = _context.get() or {}
    if context.get("api_token"):
        message = f"{message} [API token {context['api_token']!r}]".strip()
    detail = {**context, **(detail or {})}
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


@contextmanager
def audit_context(**detail):
    """Add ``detail`` to every entry recorded inside the block (``api_token`` also to its message).

    Lets an entry point say how an action came in (``source="cli"``, the API token acting) without
    every service passing it along.
    """
    reset = _context.set({**(_context.get() or {}), **detail})
    try:
        yield
    finally:
        _context.reset(reset)
