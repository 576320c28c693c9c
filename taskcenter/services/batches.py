"""Batch launch: split a list of items into slices and run one task per slice, as one group."""

import logging

from celery import group
from django.conf import settings
from django.db import transaction

from taskcenter import catalogue
from taskcenter.models import Batch, Run, RunSource
from taskcenter.services.audit import Action, Outcome, audit_record
from taskcenter.services.launch import (
    BROKER_ERRORS,
    BrokerUnavailable,
    FieldErrors,
    InvalidLaunch,
    NotLaunchable,
    launch_prepare,
)

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
) -> Batch:
    """Launch ``task_name`` once per slice of ``batch_size`` items, as one Celery group.

    The task's catalogue entry names the parameter that receives the slice
    (``batch_argument``); ``kwargs`` are passed to every run unchanged.
    """
    entry = catalogue.get_entry(task_name)
    if entry is None:
        raise NotLaunchable(f"No launchable task is named {task_name!r}.")
    errors = FieldErrors()
    if not entry.batch_argument:
        errors.add("task", f"{task_name} does not take batches (it declares no batch_argument).")
    if not isinstance(items, list) or not items:
        errors.add("items", "Give a non-empty JSON list of items.")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        errors.add("batch_size", "Batch size must be a whole number of at least 1.")
    elif isinstance(items, list) and -(-len(items) // batch_size) > settings.TASKCENTER_MAX_BATCHES:
        errors.add(
            "batch_size",
            f"{len(items)} items in batches of {batch_size} make more than "
            f"{settings.TASKCENTER_MAX_BATCHES} runs; use larger batches.",
        )
    if errors:
        raise InvalidLaunch(dict(errors))

    slices = [items[i : i + batch_size] for i in range(0, len(items), batch_size)]
    prepared = [
        launch_prepare(
            task_name=task_name,
            kwargs={**(kwargs or {}), entry.batch_argument: chunk},
            queue=queue,
            priority=priority,
        )
        for chunk in slices
    ]
    user = launched_by if getattr(launched_by, "pk", None) else None
    with transaction.atomic():
        batch = Batch.objects.create(
            task_name=task_name, item_count=len(items), batch_size=batch_size, launched_by=user
        )
        Run.objects.bulk_create([p.new_run(source=RunSource.WEB, launched_by=user, batch=batch) for p in prepared])
    signatures = [p.task.signature(args=p.args, kwargs=p.kwargs, **p.message_options()) for p in prepared]
    audit = {"actor": launched_by, "action": Action.BATCH, "target": task_name}
    try:
        result = group(signatures).apply_async()
    except BROKER_ERRORS as exc:
        batch.runs.all().delete()
        batch.delete()
        audit_record(**audit, outcome=Outcome.ERROR, message=f"Broker unavailable: {exc}")
        raise BrokerUnavailable() from exc
    batch.group_id = result.id or ""
    batch.save(update_fields=["group_id"])
    audit_record(
        **audit,
        message=f"Batch {batch.pk}: {len(items)} items in {len(prepared)} runs.",
        detail={"batch": batch.pk, "runs": len(prepared), "batch_size": batch_size},
    )
    return batch
