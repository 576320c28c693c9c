"""Batch launch: split a list of items into slices and run one task per slice, as one group."""

import logging

from celery import group
from django.conf import settings
from django.utils.translation import gettext

from taskcenter import catalogue
from taskcenter.models import Batch, RunSource
from taskcenter.services.audit import Action
from taskcenter.services.launch import FieldErrors, InvalidLaunch, NotLaunchable, launch_prepare, launches_publish

logger = logging.getLogger(__name__)


def batch_launch(
    *,
    task_name: str,
    items: list,
    batch_size: int,
    kwargs: dict | None = None,
    queue: str | None = None,
    priority: str | None = None,
    launched_by=None,
    source: RunSource = RunSource.CODE,
) -> Batch:
    """Launch ``task_name`` once per slice of ``batch_size`` items, as one Celery group.

    The task's catalogue entry names the parameter that receives the slice
    (``batch_argument``); ``kwargs`` are passed to every run unchanged. Each run
    is checked, de-duplicated and published like a single launch.
    """
    entry = catalogue.get_entry(task_name) if isinstance(task_name, str) else None
    if entry is None:
        raise NotLaunchable(gettext("No launchable task is named %(name)s.") % {"name": repr(task_name)})
    errors = FieldErrors()
    if not entry.batch_argument:
        errors.add(
            "task", gettext("%(task)s does not take batches (it declares no batch_argument).") % {"task": task_name}
        )
    if not isinstance(items, list) or not items:
        errors.add("items", gettext("Give a non-empty JSON list of items."))
    if kwargs is not None and not isinstance(kwargs, dict):
        errors.add("kwargs", gettext('Keyword arguments must be a JSON object, e.g. {"name": "value"}.'))
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        errors.add("batch_size", gettext("Batch size must be a whole number of at least 1."))
    elif isinstance(items, list) and -(-len(items) // batch_size) > settings.TASKCENTER_MAX_BATCHES:
        errors.add(
            "batch_size",
            gettext("%(items)s items in batches of %(size)s make more than %(limit)s runs; use larger batches.")
            % {"items": len(items), "size": batch_size, "limit": settings.TASKCENTER_MAX_BATCHES},
        )
    if errors:
        raise InvalidLaunch(dict(errors))

    slices = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    try:
        prepared = [
            launch_prepare(
                task_name=task_name,
                kwargs={**(kwargs or {}), entry.batch_argument: chunk},
                queue=queue,
                priority=priority,
            )
            for chunk in slices
        ]
    except InvalidLaunch as exc:
        # The slices are the items: report their errors on the items field.
        raise InvalidLaunch(
            {("items" if name == "kwargs" else name): msgs for name, msgs in exc.errors.items()}, exc.arguments
        ) from None
    batch = Batch(task_name=task_name, item_count=len(items), batch_size=batch_size)
    _, result = launches_publish(
        launches=prepared,
        send=lambda: group([p.signature() for p in prepared]).apply_async(),
        launched_by=launched_by,
        source=source,
        action=Action.BATCH,
        target=task_name,
        group=batch,
        summary=f"{len(items)} items in {len(prepared)} runs.",
        detail={"runs": len(prepared), "batch_size": batch_size},
    )
    batch.group_id = result.id or ""
    batch.save(update_fields=["group_id"])
    return batch
