"""Keep the worker's event-loop timer from holding an entry per finished task.

The prefork pool arms a soft and a hard time-limit timer for every task it starts
and cancels both when the task ends, but kombu's ``Timer`` keeps a cancelled entry
in its heap until it would have been due. With the 540 s / 600 s limits, a worker
running 200 tasks a second holds some 230,000 dead entries (about 30 MB in the
parent, inherited by every new pool child), and more the faster it runs
(``docs/benchmarks.md``, Memory). ``TimerSweep`` drops them every
``SWEEP_SECONDS`` from the event loop itself, which owns the timer.
"""

import heapq
import logging

from celery import bootsteps

logger = logging.getLogger(__name__)

#: Seconds between two sweeps of the timer.
SWEEP_SECONDS = 30


def timer_drop_cancelled(timer) -> int:
    """Remove the cancelled entries from a kombu ``Timer``'s heap; return how many were dropped."""
    queue = timer._queue
    kept = [item for item in queue if not item.entry.canceled]
    dropped = len(queue) - len(kept)
    if dropped:
        heapq.heapify(kept)
        queue[:] = kept
        logger.debug("Dropped %d cancelled timer entries, %d kept", dropped, len(kept))
    return dropped


class TimerSweep(bootsteps.StartStopStep):
    """Worker step: sweep cancelled entries out of the event loop's timer every ``SWEEP_SECONDS``."""

    requires = ("celery.worker.components:Hub",)

    def __init__(self, worker, **kwargs):
        super().__init__(worker, **kwargs)
        self.tref = None

    def start(self, worker):
        hub = getattr(worker, "hub", None)
        if hub is not None:  # no event loop (solo or threads pool): no time-limit timers either
            self.tref = hub.call_repeatedly(SWEEP_SECONDS, timer_drop_cancelled, hub.timer)

    def stop(self, worker):
        if self.tref is not None:
            self.tref.cancel()
