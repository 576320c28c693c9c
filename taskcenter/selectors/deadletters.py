"""Reads of dead letters: the filtered list (keyset pages, no COUNT), one letter, and counts for alerts."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, Q, QuerySet
from django.utils import timezone

from taskcenter.models import DeadLetter

PAGE_SIZE = 50


@dataclass(frozen=True)
class DeadLetterFilters:
    task_name: str = ""
    reason: str = ""
    exception_type: str = ""
    status: str = "open"  # open, replayed, discarded, or "" for all
    created_from: datetime | None = None
    created_to: datetime | None = None

    def as_query(self) -> dict:
        """The filter as page parameters (for links and hidden fields)."""
        return {
            "task_name": self.task_name,
            "reason": self.reason,
            "exception_type": self.exception_type,
            "status": self.status,
            "created_from": self.created_from.isoformat() if self.created_from else "",
            "created_to": self.created_to.isoformat() if self.created_to else "",
        }


@dataclass(frozen=True)
class DeadLetterPage:
    letters: list
    newer_cursor: int | None
    older_cursor: int | None


def deadletters_filtered(filters: DeadLetterFilters) -> QuerySet:
    letters = DeadLetter.objects.all()
    if filters.task_name:
        letters = letters.filter(task_name=filters.task_name)
    if filters.reason:
        letters = letters.filter(reason=filters.reason)
    if filters.exception_type:
        letters = letters.filter(exception_type=filters.exception_type)
    if filters.status == "open":
        letters = letters.filter(resolution="")
    elif filters.status:
        letters = letters.filter(resolution=filters.status)
    if filters.created_from:
        letters = letters.filter(created_at__gte=filters.created_from)
    if filters.created_to:
        letters = letters.filter(created_at__lt=filters.created_to)
    return letters.order_by("-id")


def deadletters_page(
    filters: DeadLetterFilters, *, before: int | None = None, after: int | None = None, page_size: int = PAGE_SIZE
) -> DeadLetterPage:
    """One page, newest first: older than ``before``, newer than ``after``, or the newest."""
    letters = deadletters_filtered(filters).defer("traceback")
    if after is not None:
        rows = list(letters.filter(id__gt=after).order_by("id")[: page_size + 1])
        has_newer, rows, has_older = len(rows) > page_size, list(reversed(rows[:page_size])), True
    else:
        if before is not None:
            letters = letters.filter(id__lt=before)
        rows = list(letters[: page_size + 1])
        has_older, rows, has_newer = len(rows) > page_size, rows[:page_size], before is not None
    return DeadLetterPage(
        letters=rows,
        newer_cursor=rows[0].id if rows and has_newer else None,
        older_cursor=rows[-1].id if rows and has_older else None,
    )


def deadletter_by_id(pk: int) -> DeadLetter | None:
    return DeadLetter.objects.select_related("resolved_by").filter(pk=pk).first()


def deadletters_for_action(*, ids: list[int], filters: DeadLetterFilters | None, limit: int) -> list[DeadLetter]:
    """Unresolved letters chosen by id, or every unresolved one matching ``filters``; at most ``limit``."""
    if filters is None:
        letters = DeadLetter.objects.filter(pk__in=ids).order_by("-id")
    else:
        letters = deadletters_filtered(filters)
    return list(letters.filter(resolution="").defer("traceback")[:limit])


def deadletter_counts() -> list[dict]:
    """Dead letters per reason and task, and how many are unresolved (for metrics)."""
    return list(
        DeadLetter.objects.order_by()
        .values("reason", "task_name")
        .annotate(total=Count("id"), unresolved=Count("id", filter=Q(resolution="")))
        .order_by("reason", "task_name")
    )


def deadletters_recent(*, window: timedelta) -> int:
    """Unresolved dead letters that arrived within ``window`` (bounded by the created_at index)."""
    return DeadLetter.objects.filter(created_at__gte=timezone.now() - window, resolution="").count()


def exception_types(limit: int = 100, recent: int = 1000) -> list[str]:
    """Exception types of the ``recent`` newest letters, for the filter's suggestions (no scan of the table)."""
    seen = DeadLetter.objects.order_by("-id").values_list("exception_type", flat=True)[:recent]
    return sorted({name for name in seen if name})[:limit]
