#!/usr/bin/env python
"""Benchmark: what the run-state triggers (migration 0020) add to a worker storing a task's results.

Usage: .venv/bin/python bench/run_state_trigger_cost.py [--tasks 2000] [--rounds 4]

Builds its own SQLite database, writes ``--tasks`` runs, then stores STARTED and SUCCESS
for each through the configured result backend (as a worker does), with the triggers and
then without them, alternating, and prints the CPU time per task of each (CPU, so that
other load on the machine does not count).
"""

import argparse
import importlib
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=4)
    options = parser.parse_args()
    state = Path(tempfile.mkdtemp(prefix="tc-bench-trigger-"))
    try:
        env = dict(os.environ, DEBUG="true", TASKCENTER_STATE_DIR=str(state), DJANGO_SETTINGS_MODULE="config.settings")
        env.pop("DATABASE_URL", None)
        subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
        os.environ.clear()
        os.environ.update(env)
        import django

        django.setup()
        from celery import current_app
        from django.db import connection

        from taskcenter.models import Run

        migration = importlib.import_module("taskcenter.migrations.0020_history_scale")

        def execute(sql, params=None):
            connection.cursor().execute(sql)

        editor = SimpleNamespace(connection=connection, execute=execute)
        backend = current_app.backend

        def store(prefix: str) -> float:
            ids = [f"{prefix}-{n}" for n in range(options.tasks)]
            Run.objects.bulk_create([Run(task_result_id=i, task_name="examples.add", queue="high") for i in ids])
            began = time.process_time()
            for task_id in ids:
                backend.store_result(task_id, None, "STARTED")
                backend.store_result(task_id, 3, "SUCCESS")
            return (time.process_time() - began) / options.tasks * 1000

        for n in range(options.rounds):
            with_triggers = store(f"with-{n}")
            migration.drop_triggers(None, editor)
            without = store(f"without-{n}")
            migration.create_triggers(None, editor)
            sys.stdout.write(
                f"round {n}: STARTED + SUCCESS stored, CPU per task: {with_triggers:.2f} ms with the triggers,"
                f" {without:.2f} ms without\n"
            )
    finally:
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
