#!/usr/bin/env python
"""Benchmark: response times of the dashboard, /metrics and the history with a large run history.

Usage: .venv/bin/python bench/pages_at_scale.py [--runs 1000000] [--requests 20]

Builds its own state folder (SQLite database, Valkey server), fills it with
``--runs`` runs and results plus a day of per-minute figures, then times requests
through Django's test client (no network). Prints a table; docs/benchmarks.md keeps
the figures. A benchmark, not a test: nothing here asserts a time.
"""

import argparse
import os
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def fill(db_path: Path, runs: int) -> None:
    """Insert runs, results and a day of minute figures straight into SQLite (fast)."""
    now = datetime.now(UTC)
    tasks = [("examples.add", "high"), ("examples.fail", "default"), ("examples.process_items", "low")]
    states = ["SUCCESS"] * 90 + ["FAILURE"] * 8 + ["STARTED"] + ["REVOKED"]
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=OFF")
    batch = 50_000
    for start in range(0, runs, batch):
        run_rows, result_rows = [], []
        for i in range(start, min(start + batch, runs)):
            task_id = str(uuid.UUID(int=random.getrandbits(128)))
            name, queue = tasks[i % 3]
            created = (now - timedelta(seconds=(runs - i) * 2)).isoformat(sep=" ")
            run_rows.append((task_id, name, queue, "NORMAL", "[1, 2]", "{}", "code", "", created, "", ""))
            status = random.choice(states)
            result_rows.append((task_id, name, status, "worker@bench", "application/json", "utf-8", "3", created,
                                created, created))  # fmt: skip
        con.executemany(
            "INSERT INTO taskcenter_run (task_id, task_name, queue, priority, args, kwargs, source, "
            "periodic_task_name, created_at, dedup_key, cancel_reason) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            run_rows,
        )
        con.executemany(
            "INSERT INTO django_celery_results_taskresult (task_id, task_name, status, worker, content_type, "
            "content_encoding, result, date_created, date_started, date_done) VALUES (?,?,?,?,?,?,?,?,?,?)",
            result_rows,
        )
        con.commit()
    minute = now.replace(second=0, microsecond=0)
    buckets = "[" + ",".join(["1"] * 17) + "]"
    rows = [
        ((minute - timedelta(minutes=m)).isoformat(sep=" "), name, queue, 60, 60, 55, 5, 0, 0, 1.5, buckets, 3.0,
         buckets)
        for m in range(24 * 60)
        for name, queue in tasks
    ]  # fmt: skip
    con.executemany(
        "INSERT INTO taskcenter_taskminute (minute, task_name, queue, sent, started, succeeded, failed, retried, "
        "revoked, runtime_sum, runtime_buckets, wait_sum, wait_buckets) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
        rows,
    )
    con.executemany(
        "INSERT INTO taskcenter_tasktotals (task_name, queue, sent, started, succeeded, failed, retried, revoked, "
        "runtime_sum, runtime_buckets, wait_sum, wait_buckets) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
        [(name, queue, runs, runs, runs, 0, 0, 0, 1.0, buckets, 1.0, buckets) for name, queue in tasks],
    )
    con.commit()
    con.execute("ANALYZE")
    con.close()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def timed(client, url: str, n: int, **headers) -> tuple[float, float, int]:
    times, status = [], 0
    for _ in range(n):
        began = time.perf_counter()
        response = client.get(url, **headers)
        times.append(time.perf_counter() - began)
        status = response.status_code
    return statistics.median(times), max(times), status


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--requests", type=int, default=20)
    options = parser.parse_args()

    state = Path(tempfile.mkdtemp(prefix="tc-bench-pages-"))
    env = dict(
        os.environ,
        DEBUG="true",
        TASKCENTER_STATE_DIR=str(state),
        TASKCENTER_METRICS_TOKEN="bench",
        ALLOWED_HOSTS="testserver",
    )
    env.pop("DATABASE_URL", None)
    env.pop("REDIS_URL", None)
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    began = time.perf_counter()
    fill(state / "taskcenter.sqlite3", options.runs)
    say(f"filled {options.runs:,} runs in {time.perf_counter() - began:.0f} s")

    from taskcenter.embedded_redis import server_command

    (state / "redis").mkdir(exist_ok=True)
    redis = subprocess.Popen(server_command(state / "redis", state / "redis" / "redis.sock"), stdout=subprocess.DEVNULL)
    try:
        while not (state / "redis" / "redis.sock").exists():
            time.sleep(0.05)
        os.environ.update(env)
        os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
        import django

        django.setup()
        from django.contrib.auth import get_user_model
        from django.test import Client

        user = get_user_model().objects.create_superuser(username="bench", password="bench-pass-1")
        client = Client()
        client.force_login(user)
        pages = [
            ("dashboard", "/dashboard/?refresh=0", {}),
            ("/metrics", "/metrics", {"HTTP_AUTHORIZATION": "Bearer bench"}),
            ("history, newest", "/runs/", {}),
            ("history, state=FAILURE", "/runs/?state=FAILURE", {}),
            ("history, task + state", "/runs/?task_name=examples.add&state=SUCCESS", {}),
            ("schedules", "/schedules/", {}),
        ]
        say(f"\n| page ({options.runs:,} runs) | median | max | status |\n|---|---|---|---|")
        for label, url, headers in pages:
            median, worst, status = timed(client, url, options.requests, **headers)
            say(f"| {label} | {median * 1000:.0f} ms | {worst * 1000:.0f} ms | {status} |")
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
