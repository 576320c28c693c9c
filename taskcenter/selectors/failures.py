"""Reads of failure groups and their runs (each one indexed query)."""

from dataclasses import dataclass
from datetime import datetime

from taskcenter.models import FailureGroup, Run
from taskcenter.selectors.runs import DEFAULT_PAGE_SIZE, RunPage

#: Groups shown on the Failures page at most (the most recently seen).
GROUP_LIST_LIMIT = 200


@dataclass(frozen=True)
class FailureFilters:
    task_name: str = ""
    exception_type: str = ""
    status: str = ""
    seen_from: datetime | None = None
    seen_to: datetime | None = None


def failure_groups_list(filters: FailureFilters, *, limit: int = GROUP_LIST_LIMIT) -> list[FailureGroup]:
    """Groups matching ``filters``, last seen first, at most ``limit``."""
    groups = FailureGroup.objects.all()
    if filters.task_name:
        groups = groups.filter(task_name=filters.task_name)
    if filters.exception_type:
        groups = groups.filter(exception_type=filters.exception_type)
    if filters.status:
        groups = groups.filter(status=filters.status)
    if filters.seen_from:
        groups = groups.filter(last_seen__gte=filters.seen_from)
    if filters.seen_to:
        groups = groups.filter(last_seen__lt=filters.seen_to)
    # The sample traceback can be long; the list shows none of it.
    return list(groups.defer("sample_traceback").order_by("-last_seen", "-id")[:limit])


def failure_group_by_fingerprint(fingerprint: str) -> FailureGroup | None:
    return FailureGroup.objects.select_related("status_changed_by").filter(fingerprint=fingerprint).first()


def failure_group_runs_page(
    group: FailureGroup, *, before: int | None = None, after: int | None = None, page_size: int = DEFAULT_PAGE_SIZE
) -> RunPage:
    """One page of the group's runs, newest first (keyset on id, on the index ``run_failure_id``)."""
    runs = Run.objects.filter(failure_fingerprint=group.fingerprint).select_related("task_result", "launched_by")
    if after is not None:
        rows = list(runs.filter(id__gt=after).order_by("id")[: page_size + 1])
        has_newer, has_older = len(rows) > page_size, True
        rows = list(reversed(rows[:page_size]))
    else:
        if before is not None:
            runs = runs.filter(id__lt=before)
        rows = list(runs.order_by("-id")[: page_size + 1])
        has_older, has_newer = len(rows) > page_size, before is not None
        rows = rows[:page_size]
    return RunPage(
        runs=rows,
        newer_cursor=rows[0].id if rows and has_newer else None,
        older_cursor=rows[-1].id if rows and has_older else None,
    )


def failure_group_runs_to_retry(group: FailureGroup, *, limit: int) -> list[Run]:
    """The group's failed runs not re-run yet, newest first, at most ``limit``."""
    return list(
        Run.objects.filter(failure_fingerprint=group.fingerprint, reruns__isnull=True)
        .select_related("task_result")
        .order_by("-id")[:limit]
    )


def failure_group_runs_without_deadletter(group: FailureGroup, *, limit: int) -> list[Run]:
    """The group's failed runs that have no dead letter yet, newest first, at most ``limit``."""
    from django.db.models import Exists, OuterRef

    from taskcenter.models import DeadLetter

    lettered = DeadLetter.objects.filter(task_id=OuterRef("task_result_id"))
    return list(
        Run.objects.filter(failure_fingerprint=group.fingerprint, recorded_state="FAILURE")
        .filter(~Exists(lettered))
        .select_related("task_result")
        .order_by("-id")[:limit]
    )


def new_failure_groups_per_task(*, limit: int) -> dict[str, int]:
    """Groups first seen within ``TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES``, not ignored, per task (metrics).

    The same groups as the alerts page's NewFailureGroup; read through the last_seen index
    (first seen since then implies last seen since then), at most ``limit`` of them.
    """
    from collections import Counter
    from datetime import timedelta

    from django.conf import settings
    from django.utils import timezone

    since = timezone.now() - timedelta(minutes=settings.TASKCENTER_ALERT_NEW_FAILURE_GROUP_MINUTES)
    names = (
        FailureGroup.objects.filter(last_seen__gte=since, first_seen__gte=since)
        .exclude(status=FailureGroup.Status.IGNORED)
        .order_by("-last_seen", "-id")
        .values_list("task_name", flat=True)[:limit]
    )
    return dict(sorted(Counter(names).items()))
