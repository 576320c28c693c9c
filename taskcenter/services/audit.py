"""The audit trail: one row per operator action, whatever the outcome."""

import logging
from contextlib import contextmanager
from contextvars import ContextVar

from taskcenter.models import AuditEntry
from taskcenter.rows import rows_new

logger = logging.getLogger(__name__)

Action = AuditEntry.Action
Outcome = AuditEntry.Outcome

#: Details added to every entry recorded in the current context (e.g. the API token acting).
_context: ContextVar[dict | None] = ContextVar("taskcenter_audit_context", default=None)


def audit_record(*, actor, action: str, target: str, **fields) -> AuditEntry:
    """Record one action; ``fields`` are ``audit_entry``'s. ``actor`` may be None for actions of the system itself."""
    entry = audit_entry(actor=actor, action=action, target=target, **fields)
    entry.save(force_insert=True)
    audit_log(entry)
    return entry


def audit_entry(
    *,
    actor,
    action: str,
    target: str,
    outcome: str = Outcome.OK,
    message: str = "",
    task_id: str = "",
    detail: dict | None = None,
) -> AuditEntry:
    """An unsaved entry for ``audit_record``'s arguments, with the context's details.

    For a service that writes its entries in the same transaction as the rows they
    describe (``launches_publish``): it saves them itself, then calls ``audit_log``.
    """
    context = _context.get() or {}
    if context.get("api_token"):
        message = f"{message} [API token {context['api_token']!r}]".strip()
    detail = {**context, **(detail or {})}
    return rows_new(
        AuditEntry,
        actor=actor if getattr(actor, "pk", None) else None,
        action=action,
        target=target[:255],
        outcome=outcome,
        message=message,
        task_id=task_id,
        detail=detail or {},
    )


def audit_log(entry: AuditEntry) -> None:
    """Log a recorded entry (the log line every audit entry gets)."""
    if not logger.isEnabledFor(logging.INFO):
        return
    target = f"{entry.target} [{entry.task_id}]" if entry.task_id and entry.task_id != entry.target else entry.target
    logger.info("audit: %s %s %s -> %s %s", entry.actor, entry.action, target, entry.outcome, entry.message)


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
