#!/usr/bin/env python
"""Benchmark: what History's search index (migration 0023) adds to each launch and each stored result.

Usage: .venv/bin/python bench/search_trigger_cost.py [--runs 2000] [--rounds 2] [--database-url]

Builds its own SQLite database (or, with ``--database-url``, migrates the database of
``DATABASE_URL``, e.g. the throwaway one of ``bin/test-postgres -- ...``), then, with the
search index and its triggers and without them, alternating: writes ``--runs`` runs one
INSERT and one commit each (as launches do), and stores STARTED then SUCCESS for each
through the result backend (as a worker does). Prints the time per run of each: CPU
time of this process on SQLite (other load on the machine does not count), wall-clock
time on PostgreSQL (the server does the trigger work).
"""

import argparse
import importlib
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
logger = logging.getLogger("bench.search_trigger_cost")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--database-url", action="store_true", help="use DATABASE_URL instead of a new SQLite file")
    options = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    state = Path(tempfile.mkdtemp(prefix="tc-bench-search-"))
    try:
        env = dict(os.environ, DEBUG="true", TASKCENTER_STATE_DIR=str(state), DJANGO_SETTINGS_MODULE="config.settings")
        if not options.database_url:
            env.pop("DATABASE_URL", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        os.environ.clear()
        os.environ.update(env)
        import django

        django.setup()
        from celery import current_app
        from django.db import connection

        from taskcenter.models import Run

        migration = importlib.import_module("taskcenter.migrations.0023_history_search")

        def execute(sql, params=None):
            connection.cursor().execute(sql)

        editor = SimpleNamespace(connection=connection, execute=execute)
        backend = current_app.backend
        clock = time.process_time if connection.vendor == "sqlite" else time.perf_counter

        def one_round(prefix: str) -> tuple[float, float]:
            ids = [f"{prefix}-{n}" for n in range(options.runs)]
            began = clock()
            for n, task_id in enumerate(ids):
                Run.objects.create(
                    task_result_id=task_id, task_name="examples.add", queue="high",
                    args=[n, "customer-42"], kwargs={"note": f"order {n} for warehouse seven"},
                )  # fmt: skip
            launched = clock() - began
            began = clock()
            for n, task_id in enumerate(ids):
                backend.store_result(task_id, None, "STARTED")
                backend.store_result(task_id, {"sum": n, "message": f"order {n} shipped"}, "SUCCESS")
            stored = clock() - began
            return launched / len(ids) * 1e6, stored / len(ids) * 1e6

        figures = {"with": [], "without": []}
        for round_ in range(options.rounds):
            for kind in ("with", "without"):
                if kind == "without":
                    migration.drop_search(None, editor)
                figures[kind].append(one_round(f"{kind}{round_}"))
                if kind == "without":
                    migration.create_search(None, editor)
        for kind, rows in figures.items():
            launch = min(r[0] for r in rows)
            store = min(r[1] for r in rows)
            logger.info("%s the search index: %.0f µs per launch, %.0f µs per STARTED+SUCCESS", kind, launch, store)
        logger.info("%s, %d runs per round, best of %d rounds", connection.vendor, options.runs, options.rounds)
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
