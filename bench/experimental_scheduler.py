"""An experiment for the benchmark, not a scheduler to deploy.

Celery's ``Scheduler.tick()`` sends at most one due task per call and, on every call,
compares the whole schedule with a copy taken at the last heap rebuild
(``schedules_equal``): N entry comparisons per task sent. ``DatabaseScheduler`` never
changes the entries of its schedule between two reads of the database (``reserve()``
keeps the new entry in the heap only), and every read already tells the heap to
rebuild (``_heap_invalidated``). So for it the comparison can only come out "equal"
between reads, and can be skipped.

``ConstantCompareScheduler`` is ``DatabaseScheduler`` with that comparison skipped, to
measure how much of beat's time per send the comparison is:

    .venv/bin/python bench/beat_lateness.py --scheduler bench.experimental_scheduler:ConstantCompareScheduler
"""

from django_celery_beat.schedulers import DatabaseScheduler


class ConstantCompareScheduler(DatabaseScheduler):
    def schedules_equal(self, old_schedules, new_schedules):
        if self._heap_invalidated:  # the schedule was read again from the database
            self._heap_invalidated = False
            return False
        return old_schedules is not None and new_schedules is not None
