"""STARTED is written only for a task still running after a short delay.

With ``task_track_started`` a worker wrote every task's STARTED row and then, a few
milliseconds later for a short task, its final row: two statements and two commits
per task, the larger part of the worker's cost in the database. The monitor learns
STARTED from the task-started event anyway, and the final row carries the start time.
So a pool process now keeps each STARTED write back for
``TASKCENTER_STARTED_WRITE_DELAY`` seconds: a task that ends first never writes it
(its final row gets the start time instead), and one still running then gets its
STARTED row from a thread of the pool process, so History shows it started even
without the monitor. ``0`` writes STARTED at once, as Celery does.

Order is kept: the final write of a task waits while the thread writes that task's
STARTED, and the thread's upsert never replaces a final state (a revoke from another
process may have written one).
"""

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable

logger = logging.getLogger(__name__)

#: How a held write is made: ``write(values)``, in the writer thread.
Writer = Callable[[dict], None]


class HeldStartedWrites:
    """The STARTED writes a process holds back, and the thread that makes the overdue ones."""

    #: How much later than due a held write may be made, so one wake-up serves several.
    TICK = 0.1

    def __init__(self) -> None:
        self._pid = None
        self._reset()

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._condition = threading.Condition()
        self._held: dict[str, tuple[dict, Writer]] = {}
        self._due: deque[tuple[float, str]] = deque()
        self._writing: str | None = None
        self._thread: threading.Thread | None = None

    def hold(self, task_id: str, values: dict, write: Writer, *, delay: float) -> None:
        """Keep the STARTED ``values`` of ``task_id``; ``write`` them if the task still runs after ``delay`` s."""
        if self._pid != os.getpid():
            self._reset()  # a forked child: the parent's thread and lock are not its own
        with self._condition:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskcenter-started-writes", daemon=True)
                self._thread.start()
            self._held[task_id] = (values, write)
            # The delay is the same for every entry, so the deque stays in due order.
            self._due.append((time.monotonic() + delay, task_id))
            if len(self._due) == 1:
                self._condition.notify_all()

    def take(self, task_id: str) -> dict | None:
        """Drop the held STARTED of ``task_id`` (it ends now) and return its values, or None if none is held.

        Waits while the thread is writing that task's STARTED, so the final write comes after it.
        """
        if self._pid != os.getpid():
            return None
        with self._condition:
            while self._writing == task_id:
                self._condition.wait()
            held = self._held.pop(task_id, None)
        return held[0] if held else None

    def held_count(self) -> int:
        return len(self._held)

    def _run(self) -> None:
        while True:
            with self._condition:
                task_id, held = self._next_overdue()
                self._writing = task_id
            try:
                held[1](held[0])
            except Exception:
                logger.exception("STARTED of %s could not be written", task_id)
            finally:
                with self._condition:
                    self._writing = None
                    self._condition.notify_all()

    def _next_overdue(self) -> tuple[str, tuple[dict, Writer]]:
        """Wait (holding the condition) for the first held write that is due and still held.

        Most held writes are taken back by their task's end before they are due. The
        thread does not wake for each entry: it sleeps until the first entry is due plus
        ``TICK``, then drops or returns every entry due by then, so at hundreds of short
        tasks a second it wakes about 1 / ``TICK`` times a second, not once per task.
        """
        while True:
            if not self._due:
                self._condition.wait()
                continue
            due, task_id = self._due[0]
            wait = due - time.monotonic()
            if wait > 0:
                self._condition.wait(wait + self.TICK)
                continue
            self._due.popleft()
            held = self._held.pop(task_id, None)
            if held is not None:
                return task_id, held


#: The process's held STARTED writes (a pool process's; the worker's main process runs no task).
held_started_writes = HeldStartedWrites()
