"""De-duplication keys: at most one pending or running run per key.

The key is held by a ``DedupLock`` row. A launch takes a free key with an INSERT
(the primary key makes a second INSERT fail) and a key whose run has finished
with a compare-and-swap UPDATE, so two concurrent launches cannot both win.
The run's own row is written before the key is taken, so a holder is always
visible to a competing launch.
"""

from django.db import IntegrityError, transaction

from taskcenter.models import DedupLock, Run
from taskcenter.selectors.runs import run_by_task_id

#: Attempts before giving up when the key changes hands under us.
CLAIM_ATTEMPTS = 5


class KeyHeld(Exception):
    """The key belongs to a run that still waits or runs."""

    def __init__(self, holder: Run | None):
        self.holder = holder
        super().__init__(holder)


def dedup_claim(*, key: str, task_id: str) -> None:
    """Give ``key`` to ``task_id``, or raise ``KeyHeld`` with the active run holding it."""
    for _ in range(CLAIM_ATTEMPTS):
        try:
            with transaction.atomic():
                DedupLock.objects.create(key=key, task_id=task_id)
            return
        except IntegrityError:
            pass
        lock = DedupLock.objects.filter(key=key).first()
        if lock is None:
            continue  # released meanwhile: try the INSERT again
        holder = run_by_task_id(lock.task_id)
        if holder is not None and holder.is_active:
            raise KeyHeld(holder)
        if DedupLock.objects.filter(key=key, task_id=lock.task_id).update(task_id=task_id):
            return
    raise KeyHeld(None)


def dedup_release(*, key: str, task_id: str) -> None:
    """Free ``key`` if ``task_id`` still holds it (its launch was not sent)."""
    DedupLock.objects.filter(key=key, task_id=task_id).delete()
