#!/usr/bin/env python
"""How long does the retention cleanup hold the database, at a million rows per kind?

Self-contained: the script makes its own state folder under /tmp (SQLite database, or
the PostgreSQL database named by ``--database-url``), migrates, and fills it with
``--rows`` finished runs, each with its result, and ``--rows`` audit entries, their
ages spread evenly over 100 days. Then it runs ``retention_cleanup`` with the
retentions results 7 days, runs and audit entries 30 days (so that most rows go) and the batch size ``--batch-size``.

Measured, per kind: rows deleted, seconds, rows per second, the longest single SQL
statement and the longest batch (one transaction: select the keys, copy or delete
related rows, delete). A statement-level hook (``connection.execute_wrapper``)
times every statement. Also checked: no run that lost its result reads PENDING.

    .venv/bin/python bench/retention_cleanup.py --rows 1000000
    .venv/bin/python bench/retention_cleanup.py --rows 1000000 --database-url postgres://user@/bench

This is a benchmark, not a test: nothing here asserts on timings. Output goes to the
log (stderr); ``--out`` also writes the figures as JSON.
"""

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
logger = logging.getLogger("bench.retention_cleanup")


def prepare_environment(state_dir: Path, database_url: str) -> dict:
    """Environment of this process and the migrate child: own database, nothing shared."""
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(key, None)
    os.environ.update(
        DEBUG="false",
        SECRET_KEY="bench-only-secret-key-not-used-anywhere-else-0123456789",
        ALLOWED_HOSTS="localhost",
        TASKCENTER_STATE_DIR=str(state_dir),
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    sys.path.insert(0, str(ROOT))
    env = dict(os.environ)
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)
    import django

    django.setup()
    return env


def fill(rows: int, chunk: int = 10_000) -> None:
    """Insert ``rows`` finished runs with their results and ``rows`` audit entries, ages 0-100 days."""
    from django.db import transaction
    from django.db.models import F
    from django.utils import timezone
    from django_celery_results.models import TaskResult

    from taskcenter.models import AuditEntry, Run

    now = timezone.now()
    started = time.monotonic()
    for offset in range(0, rows, chunk):
        count = min(chunk, rows - offset)
        # Oldest first, as rows are written in real life: ids grow as ages go down.
        ages = [100 - (offset + i) * 100 / rows for i in range(count)]
        with transaction.atomic():
            results = []
            runs = []
            entries = []
            for i, days in enumerate(ages):
                at = now - timedelta(days=days)
                task_id = f"bench-{offset + i:08d}"
                status = "SUCCESS" if i % 10 else "FAILURE"
                results.append(
                    TaskResult(task_id=task_id, status=status, result="42", date_started=at, date_done=at, worker="w1")
                )
                runs.append(
                    Run(task_result_id=task_id, task_name="examples.add", queue="default", created_at=at, args=[1, 2])
                )
                entries.append(AuditEntry(at=at, action="launch", target=task_id, task_id=task_id))
            TaskResult.objects.bulk_create(results)
            Run.objects.bulk_create(runs)
            AuditEntry.objects.bulk_create(entries)
        if offset and offset % 100_000 == 0:
            logger.info("filled %d of %d (%.0f s)", offset, rows, time.monotonic() - started)
    # date_done is auto_now: give the results their real ages.
    TaskResult.objects.filter(task_id__startswith="bench-").update(date_done=F("date_started"))
    logger.info("filled %d runs, results and audit entries in %.0f s", rows, time.monotonic() - started)


class StatementTimer:
    """Time every SQL statement run on the default connection; keep the longest per kind."""

    def __init__(self):
        self.kind = None
        self.longest: dict[str, tuple[float, str]] = {}
        self.statements: dict[str, int] = {}

    def __call__(self, execute, sql, params, many, context):
        started = time.monotonic()
        try:
            return execute(sql, params, many, context)
        finally:
            elapsed = time.monotonic() - started
            self.statements[self.kind] = self.statements.get(self.kind, 0) + 1
            if elapsed > self.longest.get(self.kind, (0.0, ""))[0]:
                self.longest[self.kind] = (elapsed, sql[:160])


def measure(batch_size: int) -> dict:
    from django.conf import settings
    from django.db import connection
    from django.utils import timezone

    from taskcenter.models import Run
    from taskcenter.services.retention import kind_delete_expired, retention_kinds

    settings.TASKCENTER_RETENTION_BATCH_SIZE = batch_size
    settings.CELERY_RESULT_EXPIRES = 7 * 24 * 3600
    settings.TASKCENTER_RETENTION_RUNS_DAYS = 30
    settings.TASKCENTER_RETENTION_AUDIT_DAYS = 30
    now = timezone.now()
    timer = StatementTimer()
    figures = {}
    with connection.execute_wrapper(timer):
        for kind in retention_kinds():
            if kind.name not in ("results", "runs", "audit_entries"):
                continue
            timer.kind = kind.name
            started = time.monotonic()
            deleted, longest_batch = kind_delete_expired(kind, now=now)
            seconds = time.monotonic() - started
            longest, sql = timer.longest.get(kind.name, (0.0, ""))
            figures[kind.name] = {
                "deleted": deleted,
                "seconds": round(seconds, 2),
                "rows_per_second": round(deleted / seconds) if seconds else None,
                "statements": timer.statements.get(kind.name, 0),
                "longest_statement_seconds": round(longest, 4),
                "longest_statement": sql,
                "longest_batch_seconds": round(longest_batch, 4),
            }
            logger.info("%s: %s", kind.name, figures[kind.name])
    pending = sum(1 for run in Run.objects.filter(task_result__isnull=True).iterator() if run.state == "PENDING")
    kept = Run.objects.count()
    figures["runs_kept"] = kept
    figures["runs_kept_reading_pending"] = pending
    logger.info("runs kept: %d, of which read PENDING: %d", kept, pending)
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=2000)
    parser.add_argument("--database-url", default="", help="PostgreSQL URL; default: a new SQLite file under /tmp")
    parser.add_argument("--out", type=Path)
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    state_dir = Path(tempfile.mkdtemp(prefix="taskcenter-retention-bench-"))
    prepare_environment(state_dir, options.database_url)
    from django.db import connection

    logger.info("database: %s, rows: %d, batch size: %d", connection.vendor, options.rows, options.batch_size)
    fill(options.rows)
    figures = {
        "database": connection.vendor,
        "rows": options.rows,
        "batch_size": options.batch_size,
        **measure(options.batch_size),
    }
    logger.info("figures:\n%s", json.dumps(figures, indent=2))
    if options.out:
        options.out.write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
