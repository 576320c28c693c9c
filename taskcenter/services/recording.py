"""Record runs that were published outside the launch service (beat, application code)."""

import logging

from django.db import DatabaseError

from taskcenter.models import Run, RunSource
from taskcenter.priorities import Priority

logger = logging.getLogger(__name__)

#: Header the publish signal adds so the priority reaches the after-publish hook.
PRIORITY_HEADER = "taskcenter_priority"
#: Header with the publisher's clock (Unix seconds) when the message was sent.
SENT_AT_HEADER = "taskcenter_sent_at"


def run_record_published(*, task_id: str, task_name: str, queue: str, headers: dict, body) -> None:
    """Write the Run of a task someone else published, in one INSERT.

    Called after the broker accepted the message, so a failed publish leaves no
    trace. A conflicting row (the launch service already wrote it) is ignored.
    """
    args, kwargs = _arguments(body)
    periodic_task_name = headers.get("periodic_task_name") or ""
    try:
        Run.objects.bulk_create(
            [
                Run(
                    task_result_id=task_id,
                    task_name=task_name,
                    queue=queue or "",
                    priority=Priority.from_broker(headers.get(PRIORITY_HEADER)),
                    args=args,
                    kwargs=kwargs,
                    source=RunSource.SCHEDULE if periodic_task_name else RunSource.CODE,
                    periodic_task_name=periodic_task_name,
                )
            ],
            ignore_conflicts=True,
        )
    except DatabaseError:
        # The task is already on its way; failing the publisher would not unsend it.
        logger.exception("Could not record run %s of %s", task_id, task_name)


def _arguments(body) -> tuple[list, dict]:
    # Task message protocol 2: body is (args, kwargs, embed).
    if isinstance(body, (list, tuple)) and len(body) >= 2:
        args, kwargs = body[0], body[1]
        return (list(args) if isinstance(args, (list, tuple)) else []), (kwargs if isinstance(kwargs, dict) else {})
    return [], {}
