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
    """A formatter whose ``asctime`` is UTC with milliseconds and the offset.

    A task's own logger (Celery's ``get_task_logger``) also names the run, as Celery's
    task format did: ``... INFO app.tasks: examples.add[<task id>]: message``.
    """

    def formatTime(self, record, datefmt=None):  # noqa: N802 (logging's name)
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(record.created))
        return f"{stamp},{int(record.msecs):03d}+0000"

    def formatMessage(self, record):  # noqa: N802 (logging's name)
        line = super().formatMessage(record)
        task = _running_task(record)
        if task is None:
            return line
        head, sep, message = line.partition(f"{record.name}: ")
        return f"{head}{sep}{task.name}[{task.request.id}]: {message}" if sep else line


def _running_task(record):
    """The Celery task running now, if ``record`` comes from a task logger (a child of ``celery.task``)."""
    loggers = logging.Logger.manager.loggerDict
    task_logger = loggers.get("celery.task")
    logger = loggers.get(record.name)
    if task_logger is None or not isinstance(logger, logging.Logger):
        return None
    while logger is not None and logger is not task_logger:
        logger = logger.parent
    if logger is None:
        return None
    from celery._state import get_current_task

    task = get_current_task()
    return task if task is not None and getattr(task.request, "id", None) else None
