"""Reads of dead letters: the filtered list (keyset pages, no COUNT), one letter, and counts for alerts."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import Count, QuerySet
from django.utils import timezone

from taskcenter.models import DeadLetter, DeadLetterTotal

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


def _time_ordered(filters: DeadLetterFilters) -> bool:
    """A time range is listed in time order, walking the created_at index (ids are written in about that order).

    Ordered by id, SQLite would sort every letter of the range before taking a page:
    half a second for 200 days of a million letters.
    """
    return bool(filters.created_from or filters.created_to)


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
    return letters.order_by("-created_at", "-id") if _time_ordered(filters) else letters.order_by("-id")


def _beyond(letters: QuerySet, cursor: int, *, older: bool, by_time: bool) -> QuerySet:
    """The letters after the cursor letter in the list's order (``older``: towards the end)."""
    if not by_time:
        return letters.filter(id__lt=cursor) if older else letters.filter(id__gt=cursor)
    at = DeadLetter.objects.filter(pk=cursor).values_list("created_at", flat=True).first()
    if at is None:  # the cursor letter was deleted meanwhile: fall back on its id
        return letters.filter(id__lt=cursor) if older else letters.filter(id__gt=cursor)
    if older:  # a range bound on created_at keeps it an index walk; the tie rule is checked on the few rows left
        return letters.filter(created_at__lte=at).exclude(created_at=at, id__gte=cursor)
    return letters.filter(created_at__gte=at).exclude(created_at=at, id__lte=cursor)


def deadletters_page(
    filters: DeadLetterFilters, *, before: int | None = None, after: int | None = None, page_size: int = PAGE_SIZE
) -> DeadLetterPage:
    """One page, newest first: older than ``before``, newer than ``after``, or the newest.

    Keyset pages on id; with a time range, on (created_at, id), so a page costs one walk of
    ``page_size + 1`` index entries whatever the range holds.
    """
    letters = deadletters_filtered(filters).defer("traceback")
    by_time = _time_ordered(filters)
    if after is not None:
        ascending = ("created_at", "id") if by_time else ("id",)
        rows = list(_beyond(letters, after, older=False, by_time=by_time).order_by(*ascending)[: page_size + 1])
        has_newer, rows, has_older = len(rows) > page_size, list(reversed(rows[:page_size])), True
    else:
        if before is not None:
            letters = _beyond(letters, before, older=True, by_time=by_time)
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
    """Dead letters ever kept per reason and task, and how many are unresolved (for metrics).

    Totals are counters (``DeadLetterTotal``, a few rows); unresolved letters are
    counted from the index ``deadletter_open_counts``, reading the open letters only.
    """
    counts = {
        (row["reason"], row["task_name"]): {**row, "unresolved": 0}
        for row in DeadLetterTotal.objects.values("reason", "task_name", "total")
    }
    open_rows = DeadLetter.objects.filter(resolution="").order_by().values("reason", "task_name").annotate(n=Count("*"))
    for row in open_rows:
        key = (row["reason"], row["task_name"])
        counts.setdefault(key, {"reason": key[0], "task_name": key[1], "total": row["n"]})["unresolved"] = row["n"]
    return [counts[key] for key in sorted(counts)]


def deadletters_recent(*, window: timedelta) -> int:
    """Unresolved dead letters that arrived within ``window`` (bounded by the created_at index)."""
    return DeadLetter.objects.filter(created_at__gte=timezone.now() - window, resolution="").count()


def exception_types(limit: int = 100, recent: int = 1000) -> list[str]:
    """Exception types of the ``recent`` newest letters, for the filter's suggestions (no scan of the table)."""
    seen = DeadLetter.objects.order_by("-id").values_list("exception_type", flat=True)[:recent]
    return sorted({name for name in seen if name})[:limit]
