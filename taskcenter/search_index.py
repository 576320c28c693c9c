"""History's text index on SQLite, brought up to date behind the writes (migration 0028).

Index upkeep, not a user action: the monitor and the search selector both call it.

A launch or a task's end only notes the run in ``taskcenter_run_search_pending``; this
module indexes the noted runs, many in one transaction (one FTS5 segment for a batch
instead of one per write). The monitor calls it every second; a text search calls it
before reading the index. On PostgreSQL the index is on the row itself: nothing to do.
"""

import logging
from importlib import import_module

from django.db import connection, transaction

logger = logging.getLogger(__name__)

_MIGRATION = import_module("taskcenter.migrations.0028_search_index_behind")
RUNS, SEARCH, PENDING = _MIGRATION.RUNS, _MIGRATION.SEARCH, _MIGRATION.PENDING
_body = _MIGRATION.body

#: Runs indexed per transaction: a batch holds SQLite's write lock for a few tens of milliseconds.
BATCH = 2_000
#: Runs a text search indexes first at most (a monitor that has not run for long leaves more).
SEARCH_CATCH_UP_LIMIT = 10 * BATCH
#: Longest wait of a text search for SQLite's write lock before it reads the index as it is.
SEARCH_CATCH_UP_WAIT_MS = 200

_BATCH_IDS = f"SELECT run_id FROM {PENDING} ORDER BY run_id LIMIT %s"
_STATEMENTS = (
    # Forget the text the index holds for each noted run that it indexed before ...
    f"INSERT INTO {SEARCH}({SEARCH}, rowid, body) SELECT 'delete', p.run_id, {_body('p')}"
    f" FROM {PENDING} p WHERE p.indexed = 1 AND p.run_id IN ({_BATCH_IDS})",
    # ... index the run as it is now ...
    f"INSERT INTO {SEARCH}(rowid, body) SELECT r.id, {_body('r')} FROM {RUNS} r WHERE r.id IN ({_BATCH_IDS})",
    # ... and drop the notes (a run deleted meanwhile took its note with it).
    f"DELETE FROM {PENDING} WHERE run_id IN ({_BATCH_IDS})",
)


def search_index_catch_up(*, limit: int = 10 * BATCH, wait_ms: int | None = None) -> int:
    """Index up to ``limit`` noted runs, oldest first, ``BATCH`` per transaction; return how many.

    Each batch is one write transaction (``BEGIN IMMEDIATE`` on SQLite): no other write can
    come between choosing the batch and dropping its notes. ``wait_ms`` bounds the wait for
    SQLite's write lock (instead of the connection's busy timeout): past it, the
    ``OperationalError`` "database is locked" is raised.
    """
    if connection.vendor != "sqlite" or not _anything_pending():
        return 0
    if wait_ms is None:
        return _catch_up(limit)
    with connection.cursor() as cursor:
        cursor.execute("PRAGMA busy_timeout")
        waited = cursor.fetchone()[0]
        cursor.execute(f"PRAGMA busy_timeout = {int(wait_ms)}")
        try:
            return _catch_up(limit)
        finally:
            cursor.execute(f"PRAGMA busy_timeout = {int(waited)}")


def _catch_up(limit: int) -> int:
    done = 0
    while done < limit:
        size = min(BATCH, limit - done)
        with transaction.atomic(), connection.cursor() as cursor:
            for sql in _STATEMENTS:
                cursor.execute(sql, [size])
            indexed = cursor.rowcount
        done += indexed
        if indexed < size:
            break
    return done


def _anything_pending() -> bool:
    """One indexed read, outside any transaction: a catch-up with nothing to do takes no write lock."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT 1 FROM {PENDING} LIMIT 1")
        return cursor.fetchone() is not None


def search_index_pending() -> int:
    """How many runs wait to be indexed (0 on PostgreSQL)."""
    if connection.vendor != "sqlite":
        return 0
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {PENDING}")
        return cursor.fetchone()[0]
