"""De-duplication keys: at most one pending or running run per key.

The key is held by a ``DedupLock`` row. A launch takes a free key with an INSERT
(the primary key makes a second INSERT fail) and a key whose run has finished
with a compare-and-swap UPDATE, so two concurrent launches cannot both win.
The run's own row is written before the key is taken, so a holder is always
visible to a competing launch.

The holder's state is its real state (``Run.state``: recorded final states
survive the expiry of its result). A holder that is still PENDING after
``LOST_CHECK_AGE`` seconds may have lost its message (``celery purge``, a queue
deleted in Redis): then the broker is searched for it, bounded (see
``queue_message_present``), and a run whose message is gone is recorded as
revoked and frees the key. A broker that cannot be read keeps the key held.
"""

import logging
from datetime import timedelta

from django.db import IntegrityError, transaction
from django.utils import timezone

from taskcenter.models import PENDING, REVOKED, DedupLock, Run
from taskcenter.monitor.runs import LOST_REASON
from taskcenter.selectors.runs import run_by_task_id

logger = logging.getLogger(__name__)

#: Attempts before giving up when the key changes hands under us.
CLAIM_ATTEMPTS = 5
#: Seconds a run may wait unseen before a competing launch looks for its message in the broker.
LOST_CHECK_AGE = 10


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
        if holder is not None and holder.is_active and not _message_lost(holder):
            raise KeyHeld(holder)
        if DedupLock.objects.filter(key=key, task_id=lock.task_id).update(task_id=task_id):
            return
    raise KeyHeld(None)


def dedup_release(*, key: str, task_id: str) -> None:
    """Free ``key`` if ``task_id`` still holds it (its launch was not sent)."""
    DedupLock.objects.filter(key=key, task_id=task_id).delete()


def _message_lost(run: Run) -> bool:
    """Whether a PENDING run's message is gone from the broker; records such a run as revoked."""
    from taskcenter.services.queues import queue_message_present
    from taskcenter.services.workers import BrokerDown

    if run.state != PENDING or run.created_at > timezone.now() - timedelta(seconds=LOST_CHECK_AGE):
        return False
    try:
        if queue_message_present(task_id=run.task_id, queue=run.queue):
            return False
    except BrokerDown:
        return False
    now = timezone.now()
    Run.objects.filter(pk=run.pk, recorded_state=PENDING, cancelled_at__isnull=True).update(
        recorded_state=REVOKED, recorded_finished_at=now, cancelled_at=now, cancel_reason=str(LOST_REASON)
    )
    logger.warning("Run %s of %s: %s; its de-duplication key is free again", run.task_id, run.task_name, LOST_REASON)
    return True
