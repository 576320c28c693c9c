"""The story of one run for its page: times, attempts, state timeline and lineage (parent, root, children).

The timeline is read from what the run already records (created, ETA, cancel, the
monitor's ``attempts`` and the final state): nothing more is written per task.
"""

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.utils.translation import gettext as _

from taskcenter.models import READY_STATES, Run

#: Children listed on a run's page (newest first).
CHILDREN_SHOWN = 50

#: How an attempt ended (the monitor's words) -> the state the timeline shows.
ATTEMPT_END_STATES = {
    "succeeded": "SUCCESS",
    "failed": "FAILURE",
    "retried": "RETRY",
    "revoked": "REVOKED",
    "requeued": "REQUEUED",
    "rejected": "REJECTED",
    "lost": "LOST",
}


@dataclass
class TimelineEntry:
    at: datetime | None
    state: str
    label: str
    worker: str = ""
    detail: str = ""  # an exception, a reason
    next_at: datetime | None = None  # a retry: when the next attempt is due


@dataclass
class RunStory:
    timeline: list[TimelineEntry]
    attempts: int
    retries: int
    wait_time: timedelta | None  # from sent (or its ETA) to the first start
    runtime: timedelta | None  # from the start to the end of the last attempt
    total_time: timedelta | None  # from sent to finished
    parent: Run | None = None
    parent_id: str | None = None
    root: Run | None = None
    root_id: str | None = None
    children: list[Run] = field(default_factory=list)
    more_children: bool = False


def run_story(*, run: Run) -> RunStory:
    """Times, attempts, state timeline and lineage of ``run`` (three indexed queries at most)."""
    attempts = run.attempt_list
    timeline = _timeline(run, attempts)
    first_start = next((a["started"] for a in attempts if a["started"]), None) or run.started_at
    since = run.eta if run.eta and run.eta > run.created_at else run.created_at
    finished = run.finished_at
    ids = {i for i in (run.parent_task_id, run.root_task_id) if i}
    linked = {r.task_id: r for r in Run.objects.filter(task_result_id__in=ids)} if ids else {}
    children = list(
        Run.objects.filter(parent_task_id=run.task_id)
        .select_related("task_result")
        .order_by("-id")[: CHILDREN_SHOWN + 1]
    )
    return RunStory(
        timeline=timeline,
        attempts=len(attempts) or (1 if run.started_at else 0),
        retries=sum(1 for a in attempts if a["ended"] == "retried"),
        wait_time=_span(since, first_start),
        runtime=run.duration,
        total_time=_span(run.created_at, finished),
        parent=linked.get(run.parent_task_id),
        parent_id=run.parent_task_id,
        root=linked.get(run.root_task_id),
        root_id=run.root_task_id,
        children=children[:CHILDREN_SHOWN],
        more_children=len(children) > CHILDREN_SHOWN,
    )


def _attempt_end_label(ended: str) -> str:
    labels = {
        "succeeded": _("Attempt %(number)s succeeded"),
        "failed": _("Attempt %(number)s failed"),
        "retried": _("Attempt %(number)s failed and will be retried"),
        "revoked": _("Attempt %(number)s revoked"),
        "requeued": _("Attempt %(number)s: worker lost, sent back to the queue"),
        "rejected": _("Attempt %(number)s rejected"),
        "lost": _("Attempt %(number)s lost (its worker stopped before reporting; started again)"),
    }
    return labels.get(ended, _("Attempt %(number)s ended: %(end)s"))


def _span(start, end) -> timedelta | None:
    if start is None or end is None or end < start:
        return None
    return end - start


def _timeline(run: Run, attempts: list[dict]) -> list[TimelineEntry]:
    entries = [
        TimelineEntry(at=run.created_at, state="PENDING", label=_("Sent to queue %(queue)s") % {"queue": run.queue})
    ]
    if run.eta and run.eta > run.created_at:
        entries.append(TimelineEntry(at=run.eta, state="PENDING", label=_("Due (not run before this time)")))
    for attempt in attempts:
        worker = attempt["worker"] + (f" (pid {attempt['pid']})" if attempt["pid"] else "")
        entries.append(
            TimelineEntry(
                at=attempt["started"],
                state="STARTED",
                label=_("Attempt %(number)s started") % {"number": attempt["number"]},
                worker=worker,
            )
        )
        ended = attempt["ended"]
        if ended:
            state = ATTEMPT_END_STATES.get(ended, "LOST")
            label = _attempt_end_label(ended) % {"number": attempt["number"], "end": ended}
            entries.append(
                TimelineEntry(
                    at=attempt["ended_at"],
                    state=state,
                    label=label,
                    worker=worker,
                    detail=attempt["error"],
                    next_at=attempt["next_at"],
                )
            )
    if not attempts and run.started_at:
        entries.append(TimelineEntry(at=run.started_at, state="STARTED", label=_("Started"), worker=run.worker_name))
    if run.cancelled_at:
        by = run.cancelled_by.get_username() if run.cancelled_by_id and run.cancelled_by else ""
        entries.append(
            TimelineEntry(
                at=run.cancelled_at,
                state="REVOKED",
                label=_("Cancel asked by %(user)s") % {"user": by} if by else _("Cancelled"),
                detail=run.cancel_reason,
            )
        )
    state = run.state
    last_end = next((e for e in reversed(entries) if e.state in READY_STATES), None)
    if state in READY_STATES and (last_end is None or last_end.state != state):
        entries.append(
            TimelineEntry(
                at=run.finished_at,
                state=state,
                label=_("Finished: %(state)s") % {"state": state},
                worker=run.worker_name,
                detail=run.result_text if state != "SUCCESS" else "",
            )
        )
    # In time order; an entry with no time keeps its place after those before it.
    timed = sorted((e for e in entries if e.at is not None), key=lambda e: e.at)
    return timed + [e for e in entries if e.at is None]
