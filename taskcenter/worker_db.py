"""A pool process keeps its database connection from one task to the next.

Celery's Django fixup closes every database connection before and after each task
(unless its ``db_reuse_max``, read from the setting ``CELERY_DB_REUSE_MAX`` that Celery
itself does not know, says otherwise), so each task of a pool process opened a new
connection: on SQLite four PRAGMAs before its first statement. A pool process sets the
fixup's ``db_reuse_max`` out of reach, and these receivers do what Django does around a
web request instead: after each task, a connection that is unusable (an error occurred and
it fails its check), left with autocommit off, or older than its maximum age is closed,
and the next task opens a new one. A pool process gives its connection a maximum age of
``TASKCENTER_WORKER_DB_CONN_MAX_AGE`` seconds when the database settings keep none
(``CONN_MAX_AGE`` 0, the SQLite default here); a longer one configured (``DATABASE_URL``'s 60 s)
is kept.
"""

import logging

from celery import current_app
from django.conf import settings
from django.db import connections

logger = logging.getLogger(__name__)

#: Tasks (twice: before and after each) after which Celery's fixup would close the connection.
NEVER = 10**12


def keep_connections_in_pool_process(**_) -> None:
    """``worker_process_init``: let this pool process's connections live across tasks."""
    fixups = [getattr(fixup, "_worker_fixup", None) for fixup in getattr(current_app, "_fixups", ())]
    fixups = [fixup for fixup in fixups if fixup is not None and hasattr(fixup, "db_reuse_max")]
    if not fixups:
        logger.warning("Celery's Django worker fixup not found: connections may be closed after each task")
    for fixup in fixups:
        fixup.db_reuse_max = NEVER
    max_age = settings.TASKCENTER_WORKER_DB_CONN_MAX_AGE
    for connection in connections.all():
        if connection.settings_dict.get("CONN_MAX_AGE") == 0:
            connection.settings_dict["CONN_MAX_AGE"] = max_age


def close_unusable_connections(sender=None, **_) -> None:
    """``task_postrun``: close a connection the task left unusable, in a transaction, or too old."""
    if getattr(getattr(sender, "request", None), "is_eager", False):
        return  # an eager task runs inside its caller's request or transaction
    for connection in connections.all(initialized_only=True):
        connection.close_if_unusable_or_obsolete()
