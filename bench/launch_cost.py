#!/usr/bin/env python
"""What does a launch through the service cost next to a bare ``apply_async`` with the same options?

Self-contained: its own state folder under /tmp (SQLite database, Valkey data),
``migrate``, a real Valkey server (``taskcenter.embedded_redis``), no worker. The
script then alternates rounds of

- ``celery``: the same ``apply_async`` on a stock Celery app configured from the
  project's settings (the same broker, serializer, queues, task-sent events), with
  Celery's own message class and kombu's own connections: Celery as shipped;
- ``bare``: ``examples.add.apply_async(args, task_id=..., queue=..., priority=...)``,
  the options ``run_launch`` sends, on the project's app with taskcenter's publish
  signal receivers disconnected: no Run row, but the project's connections (which
  reuse their redis-py clients, ``taskcenter.broker.ReusingConnection``);
- ``recorded``: the same call with the receivers connected, as any task published
  by code in this project: its publish signal writes the Run row
  (``taskcenter.signals.record_publish``) after the publish;
- ``service``: ``run_launch(task_name="examples.add", args=..., launched_by=user)``:
  validation, the Run row (visible as PENDING before the publish), the publish and
  the audit entry.

Each launch is timed on its own (``time.perf_counter``); rounds of ``--round``
launches of each kind take turns, so drifts of the shared machine hit all of them.
Reported: median, p95 and mean per kind, and the service's ratio to ``celery``, to ``bare``
and to ``recorded``.

    .venv/bin/python bench/launch_cost.py --launches 2000 --out bench/results/launch_cost.json
    .venv/bin/python bench/launch_cost.py --launches 500 --profile /tmp/launch.prof   # cProfile of the service rounds

This is a benchmark, not a test: nothing here asserts on timings. Output goes to the
log (stderr); ``--out`` also writes the figures as JSON.
"""

import argparse
import cProfile
import json
import logging
import os
import shutil
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_throughput import migrate, prepare_environment, start_redis, stop, versions  # noqa: E402

TASK = "examples.add"
KINDS = ("celery", "bare", "recorded", "service")

logger = logging.getLogger("bench.launch_cost")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--launches", type=int, default=2000, help="launches of each kind (default 2000)")
    parser.add_argument("--round", type=int, default=100, help="launches per round (default 100)")
    parser.add_argument("--warmup", type=int, default=50, help="untimed launches of each kind first (default 50)")
    parser.add_argument("--profile", default=None, help="write a cProfile of the service launches to this file")
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tcl-<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the state folder")
    parser.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(share * (len(ordered) - 1))))]


def summary(times: list[float]) -> dict:
    ms = [t * 1000 for t in times]
    return {
        "n": len(ms),
        "median_ms": round(statistics.median(ms), 3),
        "p95_ms": round(percentile(ms, 0.95), 3),
        "mean_ms": round(statistics.fmean(ms), 3),
    }


class Launchers:
    """One callable per kind; each launches ``examples.add`` once with the ``i``-th arguments."""

    def __init__(self):
        from celery import current_app, signals
        from django.contrib.auth import get_user_model

        from taskcenter.catalogue import get_entry
        from taskcenter.priorities import Priority
        from taskcenter.services.launch import run_launch
        from taskcenter.signals import annotate_message, record_publish

        self.signals = signals
        self.receivers = (annotate_message, record_publish)
        self.task = current_app.tasks[TASK]
        entry = get_entry(TASK)
        self.options = {"queue": entry.default_queue, "priority": Priority(entry.priority).broker_priority}
        self.run_launch = run_launch
        self.user, _ = get_user_model().objects.get_or_create(username="bench", defaults={"is_staff": True})
        self.stock_task = stock_celery_task()

    def celery(self, i: int) -> None:
        """``bare`` on the stock app (``measure`` disconnects the receivers around it)."""
        self.stock_task.apply_async(args=[i, 1], task_id=str(uuid.uuid4()), eta=None, expires=None, **self.options)

    def recorded(self, i: int) -> None:
        self.task.apply_async(args=[i, 1], task_id=str(uuid.uuid4()), eta=None, expires=None, **self.options)

    def bare(self, i: int) -> None:
        """``recorded`` with taskcenter's publish receivers disconnected (``measure`` times only the call)."""
        self.without_receivers(self.recorded, i)

    def without_receivers(self, launch, i: int) -> None:
        signals = self.signals
        signals.before_task_publish.disconnect(dispatch_uid="taskcenter.annotate_message")
        signals.after_task_publish.disconnect(dispatch_uid="taskcenter.record_publish")
        try:
            launch(i)
        finally:
            self.reconnect()

    def reconnect(self) -> None:
        self.signals.before_task_publish.connect(self.receivers[0], dispatch_uid="taskcenter.annotate_message")
        self.signals.after_task_publish.connect(self.receivers[1], dispatch_uid="taskcenter.record_publish")

    def service(self, i: int) -> None:
        self.run_launch(task_name=TASK, args=[i, 1], launched_by=self.user)


def stock_celery_task():
    """``examples.add`` on a stock Celery app with the project's settings (not the current app)."""
    from celery import Celery

    stock = Celery("stock", set_as_current=False)
    stock.config_from_object("django.conf:settings", namespace="CELERY")

    @stock.task(name=TASK, shared=False)
    def add(x, y):
        return x + y

    return add


def measure(args) -> dict:
    launchers = Launchers()
    for kind in KINDS:
        for i in range(args.warmup):
            if kind == "celery":
                launchers.without_receivers(launchers.celery, i)
            else:
                getattr(launchers, kind)(i)
    times = {kind: [] for kind in KINDS}
    profiler = cProfile.Profile() if args.profile else None
    done = 0
    counter = time.perf_counter
    while done < args.launches:
        n = min(args.round, args.launches - done)
        for kind in KINDS:
            launch, bucket = getattr(launchers, kind), times[kind]
            profiling = profiler is not None and kind == "service"
            if profiling:
                profiler.enable()
            for i in range(done, done + n):
                if kind in ("celery", "bare"):
                    # Celery's signals are global: both run without taskcenter's receivers,
                    # and disconnecting them is not part of the cost.
                    signals = launchers.signals
                    signals.before_task_publish.disconnect(dispatch_uid="taskcenter.annotate_message")
                    signals.after_task_publish.disconnect(dispatch_uid="taskcenter.record_publish")
                    start = counter()
                    (launchers.celery if kind == "celery" else launchers.recorded)(i)
                    bucket.append(counter() - start)
                    launchers.reconnect()
                    continue
                start = counter()
                launch(i)
                bucket.append(counter() - start)
            if profiling:
                profiler.disable()
        done += n
    if profiler is not None:
        profiler.dump_stats(args.profile)
        logger.info("cProfile of the service launches written to %s", args.profile)
    figures = {kind: summary(values) for kind, values in times.items()}
    service = figures["service"]
    for kind in ("celery", "bare", "recorded"):
        figures[f"ratio_service_to_{kind}"] = {
            "median": round(service["median_ms"] / figures[kind]["median_ms"], 2),
            "p95": round(service["p95_ms"] / figures[kind]["p95_ms"], 2),
        }
    return figures


def check(launches: int, warmup: int) -> dict:
    """What the launches left behind: one PENDING Run per launch, one audit entry per service launch."""
    from taskcenter.models import AuditEntry, Run

    return {
        "runs": Run.objects.filter(task_name=TASK).count(),
        "runs_expected": (launches + warmup) * 2,  # recorded and service; celery and bare record none
        "audit_entries": AuditEntry.objects.filter(target=TASK, action=AuditEntry.Action.LAUNCH).count(),
        "audit_expected": launches + warmup,
    }


def run(args, state_dir: Path) -> dict:
    env = prepare_environment(state_dir)
    logger.info("state folder %s; migrating ...", state_dir)
    migrate(env)
    # The project's log lines (one per launch and per audit entry, as in production) go to a file.
    log = open(state_dir / "launch.log", "a")  # noqa: SIM115 (closed at the end)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.StreamHandler) and handler.stream is sys.stderr:
            handler.setStream(log)
    redis_process = None
    try:
        redis_process, client = start_redis(state_dir)
        logger.info("%d launches of each kind in rounds of %d (%s) ...", args.launches, args.round, ", ".join(KINDS))
        figures = measure(args)
        return {
            "launches": args.launches,
            "round": args.round,
            "task": TASK,
            "database": "sqlite",
            "versions": versions(client),
            **figures,
            "left_behind": check(args.launches, args.warmup),
        }
    finally:
        stop(redis_process)
        log.close()


def report(r: dict) -> None:
    for kind in KINDS:
        f = r[kind]
        logger.info("%-8s median %.3f ms  p95 %.3f ms  mean %.3f ms  (n=%d)",
                    kind, f["median_ms"], f["p95_ms"], f["mean_ms"], f["n"])  # fmt: skip
    ratio = r["ratio_service_to_celery"]
    logger.info("service / stock Celery apply_async: median %.2fx, p95 %.2fx", ratio["median"], ratio["p95"])
    ratio = r["ratio_service_to_bare"]
    logger.info("service / bare apply_async of the project's app: median %.2fx, p95 %.2fx",
                ratio["median"], ratio["p95"])  # fmt: skip
    ratio = r["ratio_service_to_recorded"]
    logger.info("service / recorded apply_async: median %.2fx, p95 %.2fx", ratio["median"], ratio["p95"])
    logger.info("left behind: %s", r["left_behind"])


def main(argv=None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    args = parse_args(argv)
    state_dir = Path(args.state_dir or f"/tmp/tcl-{os.getpid()}").resolve()
    if state_dir.exists() and any(state_dir.iterdir()):
        raise SystemExit(f"{state_dir} is not empty; pass another --state-dir.")
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, state_dir)
        report(result)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            logger.info("figures written to %s", args.out)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
