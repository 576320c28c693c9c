"""Reads of the scheduled set: the runs that wait for their countdown, ETA or retry (``taskcenter.scheduled_set``)."""

from dataclasses import dataclass
from datetime import datetime

from django.utils.translation import gettext_noop

from taskcenter import scheduled_set
from taskcenter.broker import (
    BROKER_ERRORS,
    POSITION_SCAN_LIMIT,
    QueuePosition,
    broker_channel,
    broker_client,
    broker_down_message,
    queue_position,
)
from taskcenter.models import Run
from taskcenter.selectors.runs import runs_by_task_ids
from taskcenter.services import errors

PAGE_SIZE = 50


class ScheduledSetUnavailable(errors.Unavailable):
    """The broker does not answer, so the scheduled set cannot be read."""


@dataclass
class WaitingRun:
    held: scheduled_set.Held
    run: Run | None  # None for a message another client's code sent through this app


@dataclass
class ScheduledPage:
    waiting: list[WaitingRun]
    total: int
    next_after: float | None  # cursor of the next page (the last due time shown)


def scheduled_page(*, after: float | None = None, limit: int = PAGE_SIZE) -> ScheduledPage:
    """One page of waiting runs in due order (keyset on the due time), with their run rows."""
    try:
        with broker_client() as client:
            held = scheduled_set.held_list(client, after=after, limit=limit + 1)
            total = scheduled_set.held_count(client)
    except BROKER_ERRORS as exc:
        raise ScheduledSetUnavailable(broker_down_message(gettext_noop("the scheduled set cannot be shown"))) from exc
    more = len(held) > limit
    held = held[:limit]
    runs = {run.task_id: run for run in runs_by_task_ids([item.task_id for item in held])}
    return ScheduledPage(
        waiting=[WaitingRun(held=item, run=runs.get(item.task_id)) for item in held],
        total=total,
        next_after=held[-1].due.timestamp() if more and held else None,
    )


def waiting_until(task_id: str) -> datetime | None:
    """When a run waiting in the scheduled set is due; None when it is not there (or the broker is down)."""
    try:
        with broker_client() as client:
            return scheduled_set.held_due(client, task_id)
    except BROKER_ERRORS:
        return None


@dataclass
class WaitingPlace:
    """Where a waiting run is: in the scheduled set until ``due``, or at ``position`` in its queue.

    ``broker_down`` when the broker did not answer (neither is known).
    """

    due: datetime | None = None
    position: QueuePosition | None = None
    broker_down: bool = False
    limit: int = POSITION_SCAN_LIMIT


def run_waiting_place(*, task_id: str, queue: str) -> WaitingPlace:
    """Look a waiting run up in the scheduled set, then in its queue's lists (one connection, bounded reads)."""
    try:
        with broker_channel() as channel:
            due = scheduled_set.held_due(channel.client, task_id)
            if due is not None or not queue:
                return WaitingPlace(due=due)
            return WaitingPlace(position=queue_position(channel, queue, task_id))
    except BROKER_ERRORS:
        return WaitingPlace(broker_down=True)
