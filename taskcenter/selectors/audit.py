"""Queries over the audit trail, keyset-paginated like the run history."""

from dataclasses import dataclass
from datetime import datetime

from taskcenter.models import AuditEntry

PAGE_SIZE = 50


@dataclass(frozen=True)
class AuditFilters:
    action: str = ""
    actor: str = ""
    target: str = ""
    task_id: str = ""
    outcome: str = ""
    at_from: datetime | None = None
    at_to: datetime | None = None


def audit_page(filters: AuditFilters, *, before: int | None = None, page_size: int = PAGE_SIZE):
    """Entries matching ``filters``, newest first, older than ``before``; and the next cursor."""
    entries = AuditEntry.objects.select_related("actor").order_by("-id")
    if filters.action:
        entries = entries.filter(action=filters.action)
    if filters.actor:
        entries = entries.filter(actor__username=filters.actor)
    if filters.target:
        entries = entries.filter(target=filters.target)
    if filters.task_id:
        entries = entries.filter(task_id=filters.task_id)
    if filters.outcome:
        entries = entries.filter(outcome=filters.outcome)
    if filters.at_from:
        entries = entries.filter(at__gte=filters.at_from)
    if filters.at_to:
        entries = entries.filter(at__lt=filters.at_to)
    if before:
        entries = entries.filter(id__lt=before)
    rows = list(entries[: page_size + 1])
    older = rows[page_size - 1].id if len(rows) > page_size else None
    return rows[:page_size], older


def audit_for_task(task_id: str, limit: int = 50) -> list[AuditEntry]:
    """The actions taken on one run, newest first."""
    return list(AuditEntry.objects.select_related("actor").filter(task_id=task_id).order_by("-id")[:limit])
