#!/usr/bin/env python
"""Benchmark: History's state filter before and after migration 0020, and the migration's backfill, at scale.

Usage: .venv/bin/python bench/history_before_after.py [--runs 1000000] [--repeat 3]

Uses the SQLite database ``bench/pages_at_scale.py --history ... --keep`` left in
``$TMPDIR/tc-bench-history-<runs>`` (fill it first), and changes it: runs with no result
row are deleted (so that nothing is PENDING) and every run's own state is set back to
PENDING, as rows written while no monitor ran were before 0020. Then it times the state
filter of the previous release (the state computed from the run's record and its joined
result row, kept here as it was), runs the migration's backfill, and times today's
filter. Prints the figures; docs/benchmarks.md keeps them.
"""

import argparse
import importlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def previous_state_is(state: str):
    """The state filter of the release before 0020 (``selectors.runs.state_is`` then)."""
    from django.db.models import Q

    outcome = Q(recorded_state__in=("SUCCESS", "FAILURE"))
    no_result = Q(task_result__status__isnull=True)
    if state in ("SUCCESS", "FAILURE"):
        return Q(recorded_state=state) | (~outcome & Q(task_result__status=state))
    if state == "PENDING":
        return ~outcome & no_result & Q(recorded_state="PENDING", cancelled_at__isnull=True)
    recorded = Q(recorded_state=state)
    if state == "REVOKED":
        recorded |= Q(recorded_state="PENDING", cancelled_at__isnull=False)
    return ~outcome & (Q(task_result__status=state) | (no_result & recorded))


def timed(call, repeat: int) -> str:
    times = []
    for _ in range(repeat):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return f"{statistics.median(times) * 1000:.1f} ms (max {max(times) * 1000:.1f} ms)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    options = parser.parse_args()
    state = Path(tempfile.gettempdir()) / f"tc-bench-history-{options.runs}"
    if not (state / "filled").exists():
        raise SystemExit(f"Fill it first: bench/pages_at_scale.py --history 10000,{options.runs} --keep")
    os.environ.update(DEBUG="true", TASKCENTER_STATE_DIR=str(state), DJANGO_SETTINGS_MODULE="config.settings")
    os.environ.pop("DATABASE_URL", None)
    import django

    django.setup()
    from django.db import connection

    from taskcenter.models import Run
    from taskcenter.selectors.runs import RunFilters, runs_page

    out = sys.stdout.write
    with connection.cursor() as cursor:
        cursor.execute(
            "DELETE FROM taskcenter_run WHERE NOT EXISTS (SELECT 1 FROM django_celery_results_taskresult r"
            " WHERE r.task_id = taskcenter_run.task_id)"
        )
        out(f"deleted {cursor.rowcount:,} runs without a result\n")
        cursor.execute("UPDATE taskcenter_run SET state = 'PENDING'")
    states = ("PENDING", "FAILURE", "STARTED", "RETRY")
    for name in states:
        query = Run.objects.select_related("task_result", "launched_by").filter(previous_state_is(name))
        out(f"| before, state={name} | {timed(lambda q=query: list(q.order_by('-id')[:51]), options.repeat)} |\n")
    migration = importlib.import_module("taskcenter.migrations.0020_history_scale")
    began = time.perf_counter()
    migration.backfill_states(None, SimpleNamespace(connection=connection))
    out(f"backfill of {Run.objects.count():,} runs: {time.perf_counter() - began:.0f} s\n")
    for name in states:
        out(f"| after, state={name} | {timed(lambda n=name: runs_page(RunFilters(state=n)), options.repeat)} |\n")


if __name__ == "__main__":
    main()
