#!/usr/bin/env python
"""How fast a worker drains a backlog of no-op tasks: taskcenter against bare Celery, side by side.

Self-contained: its own state folder under /tmp (SQLite database, Valkey data),
``migrate``, a private Valkey server (``taskcenter.embedded_redis``) and real
``celery worker -c 2`` subprocesses (prefork, ``--loglevel=INFO`` as in the Procfile).
Configurations, measured in alternated rounds (the order turns each round):

- ``a``: bare Celery (``bench/bare_celery_app.py``, not the project's app), Celery's
  defaults, results ignored;
- ``b``: the same with taskcenter's delivery guarantees: ``task_acks_late`` and
  ``task_reject_on_worker_lost``, results ignored;
- ``c``: taskcenter as configured (``celery -A config worker``, ``examples.add``):
  every state and the result in the database, task events on;
- ``c4``: taskcenter with ``CELERY_WORKER_PREFETCH_MULTIPLIER=4`` (Celery's default),
  the setting a worker of short tasks may use (docs/operations.md);
- ``c0``: taskcenter as it was configured before the second pass of issue 12:
  ``TASKCENTER_STARTED_WRITE_DELAY=0`` (STARTED written when the task starts) and
  ``CELERY_WORKER_MAX_TASKS_PER_CHILD=200`` (a replacement can leave a pool slot empty
  for a while: billiard's pool maintenance).

Configurations starting with ``c`` are the project's code as checked out; the figures
before a change come from running this script on the earlier commit.

Each round of each configuration: empty Redis (and, for taskcenter, the results and
runs tables), publish ``--tasks`` tasks with no worker running (taskcenter's go through
``apply_async``, recording their runs as any code-published task does), start the
worker, and every 20 ms count what is done: messages neither in the queue nor
unacknowledged (``N - LLEN - HLEN unacked``). The drain is timed from the first task
done (so the worker's start-up is left out) until every task is done: for taskcenter
until every result is SUCCESS in the database, for bare Celery until the worker's
``stats`` count them all. CPU per task is the worker's (parent, pool children alive or
reaped: utime + stime + cutime + cstime from /proc) and Valkey's over the same span,
divided by the tasks done in it.

    .venv/bin/python bench/worker_drain.py --tasks 5000 --rounds 3 --out bench/results/worker_drain.json

A benchmark, not a test: nothing here asserts. Output goes to the log (stderr);
``--out`` also writes the figures as JSON.
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

from monitor_throughput import PYTHON, migrate, prepare_environment, start, start_redis, stop, versions  # noqa: E402

logger = logging.getLogger("bench.worker_drain")

TASKCENTER_TASK = "examples.add"
CONFIGS = {
    "a": "bare Celery, defaults, results ignored",
    "b": "bare Celery, acks_late + reject_on_worker_lost, results ignored",
    "c": "taskcenter as configured (every state and result in the database)",
    "c4": "taskcenter, CELERY_WORKER_PREFETCH_MULTIPLIER=4",
    "c0": "taskcenter, STARTED written at once and 200 tasks per pool process (the earlier defaults)",
}
SAMPLE_EVERY = 0.02


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=5000, help="no-op tasks per drain (default 5000)")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of every configuration (default 3)")
    parser.add_argument("--configs", default="a,b,c,c4,c0", help="configurations to measure (default a,b,c,c4,c0)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--loglevel", default="INFO", help="worker log level, all configurations (default INFO)")
    parser.add_argument("--timeout", type=float, default=600, help="give up on a drain after this many seconds")
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tcdrain-<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (database, logs)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


# --- /proc ------------------------------------------------------------------------------


def _stat(pid: int) -> list[str]:
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def cpu_seconds(pid: int) -> float:
    """CPU of a process and all its descendants, alive (utime + stime) or reaped (cutime + cstime)."""
    ticks = os.sysconf("SC_CLK_TCK")
    try:
        fields = _stat(pid)
    except OSError:
        return 0.0
    total = sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    return total + sum(cpu_seconds(child) for child in _children(pid))


# --- one drain ------------------------------------------------------------------------------


def queue_keys(client) -> list[str]:
    """Every list in Redis that holds task messages (priority sub-queues included)."""
    return [k.decode() for k in client.scan_iter(count=1000) if client.type(k) == b"list"]


def done_count(client, keys: list[str], n: int) -> int:
    pipe = client.pipeline(transaction=False)
    for key in keys:
        pipe.llen(key)
    pipe.hlen("unacked")
    return n - sum(pipe.execute())


def reset(client, config: str) -> None:
    client.flushall()
    if config.startswith("c"):
        from django_celery_results.models import TaskResult

        from taskcenter.models import Run

        TaskResult.objects.all().delete()
        Run.objects.all().delete()


def publish(config: str, n: int, bare_app) -> float:
    started = time.monotonic()
    if config.startswith("c"):
        from config.celery import app

        task = app.tasks[TASKCENTER_TASK]
        with app.producer_or_acquire() as producer:
            for i in range(n):
                task.apply_async(args=[i, 1], producer=producer)
    else:
        with bare_app.producer_or_acquire() as producer:
            for i in range(n):
                bare_app.send_task("bare.noop", args=[i, 1], producer=producer)
    return time.monotonic() - started


def worker_command(config: str, args) -> tuple[list[str], dict]:
    env = dict(os.environ)
    common = ["worker", f"-c{args.concurrency}", f"--loglevel={args.loglevel}", f"--hostname=drain-{config}@bench"]
    if config.startswith("c"):
        if config == "c4":
            env["CELERY_WORKER_PREFETCH_MULTIPLIER"] = "4"
        if config == "c0":
            env.update(TASKCENTER_STARTED_WRITE_DELAY="0", CELERY_WORKER_MAX_TASKS_PER_CHILD="200")
        return [PYTHON, "-m", "celery", "-A", "config", *common], env
    env.pop("DJANGO_SETTINGS_MODULE", None)  # else Celery's Django fixup would run in the bare worker
    env["BARE_BROKER_URL"] = os.environ["REDIS_URL"]
    env["BARE_ACKS_LATE"] = "1" if config == "b" else "0"
    return [PYTHON, "-m", "celery", "-A", "bench.bare_celery_app", *common], env


def all_done(config: str, n: int, bare_app) -> bool:
    if config.startswith("c"):
        from django_celery_results.models import TaskResult

        return TaskResult.objects.filter(status="SUCCESS", task_name=TASKCENTER_TASK).count() >= n
    stats = bare_app.control.inspect(destination=[f"drain-{config}@bench"], timeout=1).stats() or {}
    return sum(sum(s.get("total", {}).values()) for s in stats.values()) >= n


def drain(config: str, args, state_dir: Path, client, redis_pid: int, bare_app, round_no: int) -> dict:
    n = args.tasks
    reset(client, config)
    publish_seconds = publish(config, n, bare_app)
    keys = queue_keys(client)
    assert done_count(client, keys, n) == 0, "messages missing before the worker started"
    log_path = state_dir / f"worker-{config}-{round_no}.log"
    command, env = worker_command(config, args)
    worker = start(command, env, log_path)
    try:
        deadline = time.monotonic() + args.timeout
        t0 = done0 = cpu0 = redis0 = None
        while True:
            now = time.monotonic()
            if now > deadline or worker.poll() is not None:
                tail = log_path.read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{config}: drain did not finish (worker exit {worker.poll()})\n{tail}")
            done = done_count(client, keys, n)
            if t0 is None and done > 0:
                t0, done0 = now, done
                cpu0, redis0 = cpu_seconds(worker.pid), cpu_seconds(redis_pid)
            if t0 is not None and done >= n:
                break
            time.sleep(SAMPLE_EVERY)
        queue_empty = time.monotonic()
        while not all_done(config, n, bare_app):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{config}: not every task recorded as done")
            time.sleep(SAMPLE_EVERY)
        end = time.monotonic()
        cpu, redis_cpu = cpu_seconds(worker.pid) - cpu0, cpu_seconds(redis_pid) - redis0
    finally:
        stop(worker, timeout=60)
    tasks = n - done0
    return {
        "config": config,
        "round": round_no,
        "publish_per_s": round(n / publish_seconds, 1),
        "tasks_timed": tasks,
        "seconds": round(end - t0, 3),
        "tasks_per_s": round(tasks / (end - t0), 1),
        "done_lag_ms": round((end - queue_empty) * 1000, 1),
        "worker_cpu_ms_per_task": round(cpu * 1000 / tasks, 3),
        "redis_cpu_ms_per_task": round(redis_cpu * 1000 / tasks, 3),
    }


def summary(drains: list[dict], configs: list[str]) -> dict:
    out = {}
    for config in configs:
        mine = [d for d in drains if d["config"] == config]
        out[config] = {
            "description": CONFIGS[config],
            "tasks_per_s": round(statistics.median(d["tasks_per_s"] for d in mine), 1),
            "tasks_per_s_rounds": [d["tasks_per_s"] for d in mine],
            "worker_cpu_ms_per_task": round(statistics.median(d["worker_cpu_ms_per_task"] for d in mine), 2),
            "redis_cpu_ms_per_task": round(statistics.median(d["redis_cpu_ms_per_task"] for d in mine), 2),
        }
    for base in ("a", "b"):
        if base in out:
            for config in configs:
                out[config][f"ratio_to_{base}"] = round(out[config]["tasks_per_s"] / out[base]["tasks_per_s"], 2)
    return out


def table(result: dict) -> str:
    lines = [
        "| configuration | tasks/s (median; rounds) | worker CPU ms/task | Valkey CPU ms/task "
        "| ratio to (b) | ratio to (a) |",
        "|---|---|---|---|---|---|",
    ]
    for config, s in result.items():
        rounds = ", ".join(f"{r:.0f}" for r in s["tasks_per_s_rounds"])
        lines.append(
            f"| ({config}) {s['description']} | {s['tasks_per_s']:.0f} ({rounds}) | {s['worker_cpu_ms_per_task']} "
            f"| {s['redis_cpu_ms_per_task']} | {s.get('ratio_to_b', '–')} | {s.get('ratio_to_a', '–')} |"
        )
    return "\n".join(lines)


def run(args, state_dir: Path) -> dict:
    configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    unknown = set(configs) - set(CONFIGS)
    if unknown:
        raise SystemExit(f"unknown configuration(s): {', '.join(sorted(unknown))}")
    env = prepare_environment(state_dir)
    logger.info("state folder %s; migrating ...", state_dir)
    migrate(env)
    redis_process, client = start_redis(state_dir)
    from bare_celery_app import app as bare_app

    bare_app.conf.broker_url = os.environ["REDIS_URL"]
    drains = []
    try:
        for round_no in range(1, args.rounds + 1):
            shift = (round_no - 1) % len(configs)
            for config in configs[shift:] + configs[:shift]:
                result = drain(config, args, state_dir, client, redis_process.pid, bare_app, round_no)
                logger.info("round %d %s: %s", round_no, config, result)
                drains.append(result)
        return {"tasks": args.tasks, "concurrency": args.concurrency, "loglevel": args.loglevel,
                "versions": versions(client), "drains": drains, "summary": summary(drains, configs)}  # fmt: skip
    finally:
        stop(redis_process)


def main(argv=None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    args = parse_args(argv)
    state_dir = Path(args.state_dir or f"/tmp/tcdrain-{os.getpid()}").resolve()
    if state_dir.exists() and any(state_dir.iterdir()):
        raise SystemExit(f"{state_dir} is not empty; pass another --state-dir.")
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, state_dir)
        result["table"] = table(result["summary"])
        logger.info("worker drain of %d no-op tasks, -c %d:\n%s", args.tasks, args.concurrency, result["table"])
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            logger.info("figures written to %s", args.out)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
