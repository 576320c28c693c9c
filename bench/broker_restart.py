#!/usr/bin/env python
"""Runs in flight during a broker restart: how long after Redis returns do they run again?

Self-contained, like ``worker_kill.py``: its own state folder, a real Valkey with the
append-only file, the monitor and one real worker (``-c 2``). Each round launches two
``examples.process_items`` runs (``--items`` items of 0.5 s), waits until both started,
stops Redis with SIGTERM, starts it again after ``--down`` seconds, and measures the
seconds from Redis answering again to the start of each run's next attempt (the
``date_started`` its worker stores again). It also checks that each run succeeded and finished
once (``succeeded in`` lines in the worker's log).

    .venv/bin/python bench/broker_restart.py --rounds 5

A benchmark, not a test: nothing here asserts. ``--out`` also writes the figures as JSON.
"""

import argparse
import json
import logging
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_throughput import PYTHON, migrate, prepare_environment, start, start_redis, stop, wait_until  # noqa: E402

logger = logging.getLogger("bench.broker_restart")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="broker restarts (default 5)")
    parser.add_argument("--down", type=float, default=5.0, help="seconds Redis stays down (default 5)")
    parser.add_argument("--items", type=int, default=30, help="items of 0.5 s per run (default 30)")
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tcr-<pid>)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = Path(args.state_dir or f"/tmp/tcr-{os.getpid()}")
    state_dir.mkdir(parents=True, exist_ok=True)
    env = prepare_environment(state_dir)
    migrate(env)
    redis_process, client = start_redis(state_dir)
    monitor = start([PYTHON, "manage.py", "taskcenter_monitor"], env, state_dir / "monitor.log")
    worker_log = state_dir / "worker.log"
    worker = start([PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--concurrency=2",
                    "--hostname=steady@bench", "--without-mingle", "--without-gossip"], env, worker_log)  # fmt: skip
    resumes, not_resumed, twice, failed = [], 0, 0, 0
    try:
        from celery import current_app
        from django_celery_results.models import TaskResult

        from taskcenter.services.launch import run_launch

        wait_until(lambda: current_app.control.ping(timeout=1), timeout=120, what="the worker")
        wait_until(lambda: client.exists("taskcenter:monitor:tick"), timeout=60, what="the monitor")
        for round_number in range(1, args.rounds + 1):
            kwargs = {"items": args.items, "seconds_per_item": 0.5}
            ids = [run_launch(task_name="examples.process_items", kwargs=kwargs).task_id for _ in range(2)]
            wait_until(
                lambda ids=ids: TaskResult.objects.filter(task_id__in=ids, status="STARTED").count() == 2,
                timeout=60, what="both runs to start",
            )  # fmt: skip
            time.sleep(1.5)  # the append-only file is written every second
            stop(redis_process)
            time.sleep(args.down)
            redis_process, client = start_redis(state_dir)
            back = time.time()

            def restarted(ids=ids, back=back):
                # STARTED is stored again (with a new date_started) when a run starts again.
                rows = TaskResult.objects.filter(task_id__in=ids).values_list("date_started", flat=True)
                starts = [row.timestamp() for row in rows if row is not None]
                return len(starts) == 2 and all(s > back for s in starts) and starts

            try:
                starts = wait_until(restarted, timeout=120, what="both runs to start again")
                resumes.extend(s - back for s in starts)
            except RuntimeError as exc:
                logger.warning("Round %d: %s", round_number, exc)
                not_resumed += 1
            try:
                wait_until(
                    lambda ids=ids: TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == 2,
                    timeout=args.items + 120, what="both runs to succeed",
                )  # fmt: skip
            except RuntimeError as exc:
                logger.warning("Round %d: %s", round_number, exc)
                failed += 1
            log = worker_log.read_text(errors="replace")
            twice += sum(log.count(f"[{task_id}] succeeded in") > 1 for task_id in ids)
            logger.info("Round %d done; resumed after %s s", round_number, [round(r, 1) for r in resumes[-2:]])
        figures = {
            "rounds": args.rounds,
            "runs_in_flight": 2 * args.rounds,
            "down_seconds": args.down,
            "resume_seconds_median": round(statistics.median(resumes), 1) if resumes else None,
            "resume_seconds_max": round(max(resumes), 1) if resumes else None,
            "rounds_not_resumed_in_120_s": not_resumed,
            "rounds_not_succeeded": failed,
            "runs_finished_twice": twice,
            "unacked_left": client.hlen("unacked"),
        }
        logger.info("Figures: %s", json.dumps(figures))
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2))
        return figures
    finally:
        stop(worker)
        stop(monitor)
        stop(redis_process)
        if not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
