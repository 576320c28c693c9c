"""One log line format for every process: web, worker, beat, monitor and commands.

Processes run with different time zones (Django sets ``TZ`` to ``TIME_ZONE`` once
its settings load; gunicorn's master and the shell do not), so times were a mix of
UTC and +0800. Every line is stamped in UTC with its offset, e.g.
``2026-12-02 13:05:17,123+0000 INFO taskcenter.scheduler: ...``.
"""

import logging
import time

#: The format of every log line (``config.settings.LOGGING``, Celery, gunicorn).
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OffsetFormatter(logging.Formatter):
    """A formatter whose ``asctime`` is UTC with milliseconds and the offset."""

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        return f"{stamp},{int(record.msecs):03d}+0000"
