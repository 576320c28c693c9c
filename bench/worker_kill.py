#!/usr/bin/env python
"""Nothing lost when workers are killed: launch N short runs and SIGKILL a busy worker K times meanwhile.

Self-contained, like ``monitor_throughput.py``: its own state folder under /tmp (SQLite
database, Valkey data with the append-only file), a real Valkey server, the monitor
(``manage.py taskcenter_monitor``, default recovery settings unless overridden) and
``--workers`` real ``celery -A config worker`` processes. It launches ``--tasks``
``examples.sync_account`` runs (``--seconds`` each, one de-duplication key per
account) through taskcenter's launch service, then every so often kills a worker that
is running something: SIGKILL to its main process and its pool processes at once,
and starts a new worker in its place.

Measured, once every run finished or ``--timeout`` passed:

- lost: runs without a SUCCESS result (their message stranded in ``unacked``);
- executed twice: runs with more than one finished execution (``succeeded in`` lines
  in the workers' logs) -- a finished run run again by a redelivery;
- time to resume: for each attempt the monitor ended as ``worker lost``, seconds from
  the kill of its worker to the start of the next attempt;
- unacked entries left in Redis at the end;
- messages kombu lost (a worker killed between BRPOP and recording the message
  unacknowledged) that the monitor sent again;
- with ``--delayed``: runs launched with a countdown (held in the scheduled set),
  how many started before their ETA, and how late they started (on a saturated queue
  this includes the wait behind the backlog).

    .venv/bin/python bench/worker_kill.py --tasks 1000 --kills 20
    .venv/bin/python bench/worker_kill.py --tasks 100 --kills 3   # a small run

This is a benchmark, not a test: nothing here asserts. Output goes to the log (stderr);
``--out`` also writes the figures as JSON.
"""

import argparse
import json
import logging
import os
import random
import shutil
import signal
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_throughput import PYTHON, migrate, prepare_environment, start, start_redis, stop, wait_until  # noqa: E402

TASK = "examples.sync_account"
logger = logging.getLogger("bench.worker_kill")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="runs to launch (default 1000)")
    parser.add_argument("--kills", type=int, default=20, help="workers to SIGKILL (default 20)")
    parser.add_argument("--seconds", type=float, default=0.4, help="duration of one run (default 0.4)")
    parser.add_argument("--workers", type=int, default=3, help="workers running at a time (default 3)")
    parser.add_argument("--concurrency", type=int, default=2, help="processes per worker (default 2)")
    parser.add_argument("--kill-every", type=float, default=4.0, help="seconds between two kills (default 4)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds")
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tck-<pid>)")
    parser.add_argument(
        "--delayed", type=float, default=0.0,
        help="fraction of runs launched with a countdown of 2 to --max-countdown s (default 0)",
    )  # fmt: skip
    parser.add_argument("--max-countdown", type=int, default=90, help="longest countdown of a delayed run (default 90)")
    parser.add_argument("--visibility-timeout", type=int, default=None, help="CELERY_VISIBILITY_TIMEOUT of workers")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (database, logs)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


class Workers:
    """The running workers, by hostname; each one's log stays in the state folder."""

    def __init__(self, env: dict, state_dir: Path, concurrency: int):
        self.env, self.state_dir, self.concurrency = env, state_dir, concurrency
        self.running: dict[str, object] = {}
        self.logs: list[Path] = []
        self.count = 0

    def start_one(self) -> str:
        self.count += 1
        hostname = f"w{self.count}@bench"
        log = self.state_dir / f"worker-{self.count}.log"
        self.logs.append(log)
        command = [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO",
                   f"--concurrency={self.concurrency}", f"--hostname={hostname}", "--without-mingle",
                   "--without-gossip"]  # fmt: skip
        self.running[hostname] = start(command, self.env, log)
        return hostname

    def kill(self, hostname: str) -> float:
        """SIGKILL the worker's main process and its pool processes; returns the time of the kill."""
        process = self.running.pop(hostname)
        pids = [process.pid, *children(process.pid)]
        at = time.time()
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        process.wait(timeout=30)
        return at

    def stop_all(self) -> None:
        for process in self.running.values():
            stop(process)


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if int(stat.read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(stat.parent.name))
        except (OSError, IndexError, ValueError):
            continue
    return found


def busy_worker(hostnames: list[str]) -> str | None:
    """A worker the results say is running something now."""
    from django_celery_results.models import TaskResult

    busy = set(TaskResult.objects.filter(status="STARTED", worker__in=hostnames).values_list("worker", flat=True))
    return random.choice(sorted(busy)) if busy else None


def main(argv=None) -> dict:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    state_dir = Path(args.state_dir or f"/tmp/tck-{os.getpid()}")
    state_dir.mkdir(parents=True, exist_ok=True)
    env = prepare_environment(state_dir)
    if args.visibility_timeout:
        env.update(
            CELERY_VISIBILITY_TIMEOUT=str(args.visibility_timeout),
            CELERY_TASK_TIME_LIMIT=str(args.visibility_timeout - 10),
            CELERY_TASK_SOFT_TIME_LIMIT=str(args.visibility_timeout - 20),
        )  # fmt: skip
    migrate(env)
    redis_process, client = start_redis(state_dir)
    monitor = start([PYTHON, "manage.py", "taskcenter_monitor"], env, state_dir / "monitor.log")
    workers = Workers(env, state_dir, args.concurrency)
    try:
        from celery import current_app
        from django_celery_results.models import TaskResult

        from taskcenter.models import Run
        from taskcenter.services.launch import run_launch

        for _ in range(args.workers):
            workers.start_one()
        wait_until(lambda: len(current_app.control.ping(timeout=1)) >= args.workers, timeout=120, what="workers")
        wait_until(lambda: client.exists("taskcenter:monitor:tick"), timeout=60, what="the monitor")

        started = time.time()
        rng = random.Random(7)
        ids, etas = [], {}
        for n in range(args.tasks):
            countdown = rng.randint(2, args.max_countdown) if rng.random() < args.delayed else None
            run = run_launch(
                task_name=TASK, kwargs={"account_id": n, "seconds": args.seconds}, dedup_key=f"acct-{n}",
                countdown=countdown,
            )  # fmt: skip
            ids.append(run.task_id)
            if run.eta:
                etas[run.task_id] = run.eta.timestamp()
        logger.info("Launched %d runs in %.1f s", len(ids), time.time() - started)
        kills: dict[str, float] = {}
        while len(kills) < args.kills and time.time() - started < args.timeout:
            time.sleep(args.kill_every)
            victim = busy_worker(list(workers.running))
            if victim is None:
                if TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == len(ids):
                    break
                continue
            kills[victim] = workers.kill(victim)
            workers.start_one()
            logger.info("Killed %s (%d of %d)", victim, len(kills), args.kills)

        def all_done():
            return TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").count() == len(ids)

        try:
            wait_until(all_done, timeout=max(60.0, args.timeout - (time.time() - started)), what="every run")
        except RuntimeError as exc:
            logger.warning("%s", exc)
        finished = time.time()
        time.sleep(5)  # the monitor's last flush of attempts

        done = set(TaskResult.objects.filter(task_id__in=ids, status="SUCCESS").values_list("task_id", flat=True))
        logs = "".join(path.read_text(errors="replace") for path in workers.logs if path.exists())
        twice = [task_id for task_id in ids if logs.count(f"[{task_id}] succeeded in") > 1]
        resumes = []
        for attempts in Run.objects.filter(task_result_id__in=ids).values_list("attempts", flat=True):
            for previous, following in zip(attempts, attempts[1:], strict=False):
                if previous.get("ended") == "worker lost" and previous.get("worker") in kills:
                    restarted = datetime.fromisoformat(following["started"]).timestamp()
                    resumes.append(restarted - kills[previous["worker"]])
        starts = dict(
            TaskResult.objects.filter(task_id__in=list(etas)).values_list("task_id", "date_started")
        )  # fmt: skip
        lateness = [starts[t].timestamp() - eta for t, eta in etas.items() if starts.get(t)]
        early = [late for late in lateness if late < -0.01]
        from taskcenter.models import AuditEntry

        sent_again = AuditEntry.objects.filter(
            action="run_recover", task_id__in=ids, message__startswith="Sent again"
        ).count()  # fmt: skip
        figures = {
            "tasks": len(ids),
            "messages_lost_by_the_broker_and_sent_again": sent_again,
            "delayed": len(etas),
            "visibility_timeout": args.visibility_timeout,
            "delayed_started_before_eta": len(early),
            "delayed_lateness_seconds_median": round(statistics.median(lateness), 2) if lateness else None,
            "delayed_lateness_seconds_max": round(max(lateness), 2) if lateness else None,
            "kills": len(kills),
            "seconds_per_task": args.seconds,
            "workers": args.workers,
            "concurrency": args.concurrency,
            "lost": len(ids) - len(done),
            "finished_runs_executed_twice": len(twice),
            "runs_resumed_after_a_kill": len(resumes),
            "resume_seconds_median": round(statistics.median(resumes), 1) if resumes else None,
            "resume_seconds_max": round(max(resumes), 1) if resumes else None,
            "unacked_left": client.hlen("unacked"),
            "wall_seconds": round(finished - started, 1),
        }
        logger.info("Figures: %s", json.dumps(figures))
        if args.out:
            Path(args.out).write_text(json.dumps(figures, indent=2))
        return figures
    finally:
        workers.stop_all()
        stop(monitor)
        stop(redis_process)
        if not args.keep and not args.state_dir:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
