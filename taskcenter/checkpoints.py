"""Checkpoints: the state a task saves to continue from, kept in the database with a checksum.

Inside a task (``bind=True`` gives ``self``; ``celery.current_task`` works too)::

    from taskcenter.checkpoints import checkpoint_load, checkpoint_save

    @launchable_task(name="imports.load", bind=True, recovery="RESUME")
    def load(self, rows: list):
        start = (checkpoint_load(self) or {}).get("done", 0)
        for done in range(start + 1, len(rows) + 1):
            ...
            checkpoint_save(self, {"done": done}, progress=f"{done} of {len(rows)}")

``checkpoint_save`` writes at most once per ``TASKCENTER_CHECKPOINT_INTERVAL``
seconds per run: in between, the latest state is kept in memory and written when
the task ends (``task_postrun``, which costs a task that saves no checkpoint one
dictionary lookup). ``checkpoint_load`` returns the last valid state of this run,
or, for a run launched with the RESUME strategy, of the lineage it continues; a
checkpoint whose checksum does not match is skipped with a warning.
"""

import hashlib
import json
import logging
import time
from dataclasses import dataclass, field

from django.conf import settings
from django.db import DatabaseError

logger = logging.getLogger(__name__)

#: Checkpoints examined by one load before giving up on finding a valid one.
LOAD_LIMIT = 20


def canonical_json(state) -> str:
    """The one JSON text of ``state`` its checksum is computed on (sorted keys, no spaces, no NaN)."""
    return json.dumps(state, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def checksum_of(state) -> str:
    return hashlib.sha256(canonical_json(state).encode()).hexdigest()


def checkpoint_is_valid(checkpoint) -> bool:
    """Does the stored state still match the checksum written with it?"""
    try:
        return checksum_of(checkpoint.state) == checkpoint.checksum
    except (TypeError, ValueError):
        return False


@dataclass
class _RunCheckpoints:
    """What this worker process remembers about the checkpoints of one run."""

    root_task_id: str
    resumes: bool  # launched with RESUME: reads its lineage's checkpoints, not only its own
    sequence: int = 0
    last_write: float = float("-inf")
    pending: dict | None = field(default=None)  # {"state": ..., "progress": ...} not yet written


_runs: dict[str, _RunCheckpoints] = {}


def _task_id(task) -> str:
    if task is None:
        from celery import current_task

        task = current_task
    task_id = getattr(getattr(task, "request", None), "id", None)
    if not task_id:
        raise RuntimeError("Checkpoints can only be saved and loaded inside a running task.")
    return task_id


def _run(task_id: str) -> _RunCheckpoints:
    """This run's record, found once per run: its lineage root, and whether it resumes."""
    known = _runs.get(task_id)
    if known is not None:
        return known
    from taskcenter.models import Checkpoint, RecoveryAction, Run
    from taskcenter.strategies import Strategy

    root, resumes = task_id, False
    # The recovery service records a RESUME (new_task_id still empty) before it launches the new run.
    previous = Run.objects.filter(task_result_id=task_id).values_list("retry_of__task_result_id", flat=True).first()
    if previous and (
        RecoveryAction.objects.filter(
            task_id=previous, strategy=Strategy.RESUME, new_task_id__in=[task_id, ""]
        ).exists()
    ):
        resumes = True
        earlier = Checkpoint.objects.filter(task_id=previous).values_list("root_task_id", flat=True).first()
        root = earlier or previous
    own = Checkpoint.objects.filter(task_id=task_id).order_by("-id").values_list("sequence", flat=True).first()
    known = _runs[task_id] = _RunCheckpoints(root_task_id=root, resumes=resumes, sequence=own or 0)
    return known


def checkpoint_save(task=None, state=None, *, progress: str = "", force: bool = False) -> bool:
    """Save ``state`` (plain JSON) as the run's latest checkpoint; return True if written now.

    Written at once when the last write is at least ``TASKCENTER_CHECKPOINT_INTERVAL``
    seconds old (or ``force``), else kept in memory and written at the task's end.
    Raises ``ValueError``/``TypeError`` for a state that is not plain JSON or too large.
    """
    task_id = _task_id(task)
    text = canonical_json(state)
    if len(text.encode()) > settings.TASKCENTER_CHECKPOINT_MAX_BYTES:
        raise ValueError(
            f"Checkpoint of {len(text.encode())} bytes exceeds TASKCENTER_CHECKPOINT_MAX_BYTES "
            f"({settings.TASKCENTER_CHECKPOINT_MAX_BYTES})."
        )
    run = _run(task_id)
    run.pending = {"state": json.loads(text), "progress": str(progress)[:200]}
    now = time.monotonic()
    if force or now - run.last_write >= settings.TASKCENTER_CHECKPOINT_INTERVAL:
        return _write(task_id, run, now)
    return False


def _write(task_id: str, run: _RunCheckpoints, now: float) -> bool:
    from taskcenter.models import Checkpoint

    pending, run.pending = run.pending, None
    if pending is None:
        return False
    try:
        Checkpoint.objects.create(
            task_id=task_id,
            root_task_id=run.root_task_id,
            sequence=run.sequence + 1,
            state=pending["state"],
            progress=pending["progress"],
            checksum=checksum_of(pending["state"]),
        )
    except DatabaseError:
        run.pending = pending  # try again at the next save or at the end
        logger.exception("Could not write a checkpoint of run %s", task_id)
        return False
    run.sequence += 1
    run.last_write = now
    return True


def checkpoint_load(task=None):
    """The state of the last valid checkpoint this run may continue from, or None.

    A state saved but not yet written by this process wins; then this run's
    checkpoints; then, for a run launched with RESUME, its lineage's.
    """
    from taskcenter.models import Checkpoint

    task_id = _task_id(task)
    run = _run(task_id)
    if run.pending is not None:
        return run.pending["state"]
    scope = Checkpoint.objects.filter(root_task_id=run.root_task_id) if run.resumes else None
    candidates = (scope if scope is not None else Checkpoint.objects.filter(task_id=task_id)).order_by("-id")
    for checkpoint in candidates[:LOAD_LIMIT]:
        if checkpoint_is_valid(checkpoint):
            return checkpoint.state
        logger.warning(
            "Checkpoint %s of run %s ignored: its checksum does not match its state", checkpoint.pk, checkpoint.task_id
        )
    return None


def checkpoints_flush(task_id: str | None) -> None:
    """Write the run's pending checkpoint, if any, and forget the run (called when a task ends)."""
    run = _runs.pop(task_id, None) if task_id else None
    if run is not None and run.pending is not None:
        _write(task_id, run, time.monotonic())


def flush_at_task_end(sender=None, task_id=None, **_):
    """``task_postrun`` receiver: the latest state of a run is never lost to the rate limit."""
    if task_id in _runs:
        checkpoints_flush(task_id)
