"""A worker sends its task events in batches, at most ``TASKCENTER_WORKER_EVENT_FLUSH_SECONDS`` late.

Celery's worker already buffers task events (task-received, -started, -succeeded, ...)
and sends them as one ``task.multi`` message, but it flushes the buffer at the next
turn of its event loop: with no-op tasks, about two PUBLISH round trips to Redis per
task, the largest share of the main process's time (docs/benchmarks.md, "Worker
drain"). This consumer step flushes the buffer once per interval instead (and, as
before, whenever it holds ``buffer_limit``, 24, events). The monitor reads the batches as
it always did; an event reaches it at most the interval later. Events still buffered
when the worker stops are sent as it stops (Celery's ``Events`` step flushes on close);
a worker killed outright loses at most one interval of events, never a result (results
are written by the pool process before the message is acknowledged).
"""

from celery import bootsteps
from django.conf import settings


class EventBatches(bootsteps.Step):
    """Consumer step: task events leave in one message per interval instead of one per loop turn."""

    def __init__(self, parent, **kwargs):
        super().__init__(parent, **kwargs)
        delay = settings.TASKCENTER_WORKER_EVENT_FLUSH_SECONDS
        if delay <= 0:
            return
        scheduled = []

        def flush():
            scheduled.clear()
            parent._flush_events()

        def on_send_event_buffered():
            # Celery's Events step hands this to the dispatcher when it starts (an instance attribute wins).
            hub = parent.hub
            if hub is not None and not scheduled:
                scheduled.append(hub.call_later(delay, flush))

        parent.on_send_event_buffered = on_send_event_buffered
