#!/usr/bin/env python
"""Resident memory of every process of ``make run``, at idle and as 100,000 tasks go through.

Self-contained: its own state folder under /tmp (SQLite database, Valkey data),
``migrate``, then the processes ``bin/run`` starts from the Procfile, with the
Procfile's commands and defaults:

- Redis: the bundled Valkey server on a Unix socket (``manage.py embedded_redis``
  execs the same ``server_command``);
- web: ``gunicorn config.wsgi:application --workers 2`` (master and two workers);
- worker: ``celery -A config worker --loglevel=INFO`` (parent and its pool children,
  one per CPU);
- beat: ``celery -A config beat``;
- monitor: ``manage.py taskcenter_monitor``.

Measured: each process's RSS (``VmRSS`` in ``/proc/<pid>/status``; for the worker
and gunicorn, the parent and each child) at idle, then after each step of
``--step`` ``examples.add`` tasks published in bulk (``apply_async`` over one
producer, each recording its Run as any code-published task does) and drained by
the worker; at each step a logged-in client also loads a few pages (runs list,
filtered, a run, queues, the catalogue) from both gunicorn workers. A last sample after
``--rest`` seconds of idle shows whether memory is given back.

    .venv/bin/python bench/memory.py --tasks 100000 --step 25000 --out bench/results/memory.json

This is a benchmark, not a test: nothing here asserts. Output goes to the log
(stderr); ``--out`` also writes the figures as JSON.
"""

import argparse
import http.client
import json
import logging
import os
import shutil
import socket
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from monitor_throughput import (  # noqa: E402
    PYTHON,
    migrate,
    prepare_environment,
    start,
    start_redis,
    stop,
    versions,
    wait_until,
)

TASK = "examples.add"
PAGES = ["/runs/", "/runs/?state=SUCCESS", "/runs/?task_name=examples.add", "/queues/", "/"]
#: What the children of a process are called in the table.
CHILDREN = {"web": "web worker", "worker": "worker pool child"}

logger = logging.getLogger("bench.memory")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=100_000, help="tasks in all (default 100000)")
    parser.add_argument("--step", type=int, default=25_000, help="tasks per step (default 25000)")
    parser.add_argument("--idle", type=float, default=20, help="seconds of idle before the first sample")
    parser.add_argument("--rest", type=float, default=60, help="seconds of idle before the last sample")
    parser.add_argument("--timeout", type=float, default=3600, help="give up on a step after this many seconds")
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tcmem-<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (database, logs)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


# --- /proc ------------------------------------------------------------------------------


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return sorted(set(found))


def sample(processes: dict) -> dict:
    """RSS in MB of each process, and of the children of those that have some (worker pool, gunicorn)."""
    out = {}
    for name, process in processes.items():
        out[name] = rss_mb(process.pid)
        for i, child in enumerate(children(process.pid), start=1):
            out[f"{CHILDREN.get(name, name + ' child')} {i}"] = rss_mb(child)
    return out


# --- the run ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def session_cookie() -> str:
    """A logged-in staff session (the pages need one)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model
    from django.contrib.sessions.backends.db import SessionStore

    user, _ = get_user_model().objects.get_or_create(
        username="bench", defaults={"is_staff": True, "is_superuser": True}
    )
    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def load_pages(port: int, cookie: str, rounds: int = 4) -> dict:
    """GET each page ``rounds`` times (gunicorn spreads them over its workers); status counts."""
    from taskcenter.models import Run

    pages = [*PAGES, f"/runs/{Run.objects.order_by('-id').values_list('task_result_id', flat=True).first()}/"]
    statuses: dict[int, int] = {}
    for _ in range(rounds):
        for page in pages:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            conn.request("GET", page, headers={"Cookie": f"sessionid={cookie}", "Host": "localhost"})
            response = conn.getresponse()
            response.read()
            statuses[response.status] = statuses.get(response.status, 0) + 1
            conn.close()
    return statuses


def publish(n: int, offset: int) -> float:
    from celery import current_app

    task = current_app.tasks[TASK]
    started = time.monotonic()
    with current_app.producer_or_acquire() as producer:
        for i in range(offset, offset + n):
            task.apply_async(args=[i, 1], producer=producer)
    return time.monotonic() - started


def succeeded() -> int:
    from django_celery_results.models import TaskResult

    return TaskResult.objects.filter(status="SUCCESS").count()


def run(args, state_dir: Path) -> dict:
    env = prepare_environment(state_dir)
    logger.info("state folder %s; migrating ...", state_dir)
    migrate(env)
    port = free_port()
    processes: dict = {}
    redis_process = None
    try:
        redis_process, client = start_redis(state_dir)
        processes["redis"] = redis_process
        logs = {name: state_dir / f"{name}.log" for name in ("web", "worker", "beat", "monitor")}
        processes["web"] = start(
            [PYTHON, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}", "--workers", "2",
             "--timeout", "30", "--access-logfile", "-"], env, logs["web"])  # fmt: skip
        processes["worker"] = start(
            [PYTHON, "-m", "celery", "-A", "config", "worker", "--loglevel=INFO", "--hostname=worker@bench"],
            env, logs["worker"])  # fmt: skip
        beat = [PYTHON, "-m", "celery", "-A", "config", "beat", "--loglevel=INFO"]
        processes["beat"] = start(beat, env, logs["beat"])
        processes["monitor"] = start([PYTHON, "manage.py", "taskcenter_monitor"], env, logs["monitor"])

        from celery import current_app

        worker = processes["worker"]
        wait_until(lambda: current_app.control.ping(destination=["worker@bench"], timeout=0.5), timeout=120,
                   what="the worker to answer", process=worker, log_path=logs["worker"])  # fmt: skip
        monitor = processes["monitor"]
        wait_until(lambda: "consuming events" in logs["monitor"].read_text(errors="replace"), timeout=120,
                   what="the monitor to consume events", process=monitor, log_path=logs["monitor"])  # fmt: skip
        cookie = session_cookie()
        wait_until(lambda: load_pages(port, cookie, rounds=1), timeout=60, what="the web server")
        logger.info("all processes up; idle for %.0f s", args.idle)
        time.sleep(args.idle)
        samples = [{"tasks": 0, "label": "idle", "rss_mb": sample(processes)}]
        logger.info("idle: %s", samples[-1]["rss_mb"])

        done = 0
        while done < args.tasks:
            n = min(args.step, args.tasks - done)
            seconds = publish(n, done)
            logger.info("published %d tasks in %.1f s; waiting for the worker ...", n, seconds)
            done += n
            step_started = time.monotonic()
            wait_until(lambda total=done: succeeded() >= total, timeout=args.timeout, what=f"{done} tasks to succeed",
                       process=worker, log_path=logs["worker"])  # fmt: skip
            drain = time.monotonic() - step_started
            time.sleep(5)  # the monitor's last flush
            statuses = load_pages(port, cookie)
            samples.append({"tasks": done, "label": f"after {done:,}", "rss_mb": sample(processes),
                            "publish_seconds": round(seconds, 1), "drain_seconds": round(drain, 1),
                            "pages": statuses})  # fmt: skip
            logger.info("after %d tasks (drained in %.0f s, pages %s): %s", done, drain, statuses,
                        samples[-1]["rss_mb"])  # fmt: skip
        logger.info("resting %.0f s", args.rest)
        time.sleep(args.rest)
        samples.append({"tasks": done, "label": f"after {done:,}, {args.rest:.0f} s idle", "rss_mb": sample(processes)})
        logger.info("rest: %s", samples[-1]["rss_mb"])
        from taskcenter.models import Run, TaskTotals

        return {
            "tasks": args.tasks,
            "step": args.step,
            "task": TASK,
            "versions": versions(client),
            "samples": samples,
            "runs": Run.objects.count(),
            "monitor_succeeded": sum(TaskTotals.objects.filter(task_name=TASK).values_list("succeeded", flat=True)),
        }
    finally:
        for name in ("web", "beat", "monitor", "worker"):
            stop(processes.get(name), timeout=60)
        stop(redis_process)


def table(r: dict) -> str:
    """The samples as a Markdown table: one row per process, one column per sample."""
    samples = r["samples"]
    names = list(dict.fromkeys(name for s in samples for name in s["rss_mb"]))
    lines = ["| process | " + " | ".join(s["label"] for s in samples) + " |", "|---" * (len(samples) + 1) + "|"]
    for name in names:
        cells = [f"{s['rss_mb'].get(name)}" if s["rss_mb"].get(name) is not None else "–" for s in samples]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    totals = [round(sum(v for v in s["rss_mb"].values() if v), 1) for s in samples]
    lines.append("| **total** | " + " | ".join(str(t) for t in totals) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    args = parse_args(argv)
    state_dir = Path(args.state_dir or f"/tmp/tcmem-{os.getpid()}").resolve()
    if state_dir.exists() and any(state_dir.iterdir()):
        raise SystemExit(f"{state_dir} is not empty; pass another --state-dir.")
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, state_dir)
        result["table"] = table(result)
        logger.info("RSS in MB:\n%s", result["table"])
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            logger.info("figures written to %s", args.out)
        return 0
    finally:
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
