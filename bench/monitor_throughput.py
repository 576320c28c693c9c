#!/usr/bin/env python
"""Does the monitor keep up with a worker running no-op tasks flat out, and how far behind is it?

Self-contained: the script makes its own state folder under /tmp (SQLite database,
Valkey data), migrates, starts a real Valkey server (``taskcenter.embedded_redis``),
the monitor (``manage.py taskcenter_monitor``, default 2 s flushes) and, depending on
the mode, a real ``celery -A config worker -c 2``. Then it publishes ``--tasks``
``examples.add`` tasks as fast as one publisher can (each publish also records its
Run row and sends a task-sent event, as in production).

Modes:

- ``backlog`` (default): publish everything with no worker running, then start the
  worker and let it drain the queue. The monitor first sees a burst of task-sent
  events alone, then received/started/succeeded events at the worker's full speed.
- ``concurrent``: the worker runs while the tasks are published.
- ``synthetic``: no worker and no task messages; the script itself sends the four
  events of each of N fake tasks (task-sent, -received, -started, -succeeded) as fast
  as it can, buffered in lists of 24 as a worker sends them. This measures how many
  events per second the monitor can count, independently of what a worker manages.

Measured:

- publish rate, and the worker's drain rate (from the ``date_done`` of every result,
  the ground truth written by the worker);
- whether the monitor's counts (``TaskTotals`` and the ``TaskMinute`` rows) reach
  exactly N sent / started / succeeded, with N run times and N wait times;
- how far behind the monitor is: every 0.2 s the script reads the monitor's
  succeeded (and sent) count m(t); its lag at that moment is t minus the time the
  m-th task finished (was published). Reported: the largest lag, the lag when the
  monitor's count reached N, and the most tasks it was behind. The flush interval
  (2 s) is part of the lag by design;
- CPU time and peak memory of the monitor process.

    .venv/bin/python bench/monitor_throughput.py --tasks 20000
    .venv/bin/python bench/monitor_throughput.py --tasks 20000 --mode concurrent
    .venv/bin/python bench/monitor_throughput.py --tasks 50000 --mode synthetic

This is a benchmark, not a test: nothing here asserts on timings. Output goes to the
log (stderr); ``--out`` also writes the figures as JSON.
"""

import argparse
import bisect
import ctypes
import json
import logging
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TASK = "examples.add"
SYNTHETIC_TASK = "bench.synthetic"
SAMPLE_EVERY = 0.2

logger = logging.getLogger("bench.monitor")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=20_000, help="no-op tasks to publish (default 20000)")
    parser.add_argument("--mode", choices=("backlog", "concurrent", "synthetic"), default="backlog")
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2)")
    parser.add_argument("--worker-loglevel", default="INFO", help="worker log level (Procfile default: INFO)")
    parser.add_argument("--flush-interval", type=float, default=None, help="monitor flush interval (default: its own)")
    parser.add_argument("--timeout", type=float, default=900, help="give up after this many seconds of draining")
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tcm-<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (database, logs)")
    parser.add_argument("--out", default=None, help="also write the figures as JSON to this file")
    return parser.parse_args(argv)


# --- processes ----------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children get SIGTERM if this script dies, so no server, worker or monitor outlives it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def prepare_environment(state_dir: Path) -> dict:
    """Environment of this process and its children: own database and broker, nothing shared."""
    redis_socket = state_dir / "redis" / "redis.sock"
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(key, None)
    os.environ.update(
        DEBUG="false",
        SECRET_KEY="bench-only-secret-key-not-used-anywhere-else-0123456789",
        ALLOWED_HOSTS="localhost",
        TASKCENTER_STATE_DIR=str(state_dir),
        REDIS_URL=f"redis+socket://{redis_socket}",
        DJANGO_SETTINGS_MODULE="config.settings",
        PYTHONUNBUFFERED="1",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    return dict(os.environ)


def migrate(env: dict) -> None:
    subprocess.run([PYTHON, "manage.py", "migrate", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


def start_redis(state_dir: Path):
    import redis

    from taskcenter.embedded_redis import server_command

    data_dir = state_dir / "redis"
    data_dir.mkdir(parents=True, exist_ok=True)
    socket = data_dir / "redis.sock"
    log = open(state_dir / "redis.log", "ab")  # noqa: SIM115 (closed with the process)
    process = subprocess.Popen(server_command(data_dir, socket), stdout=log, stderr=log, preexec_fn=_die_with_parent)
    client = redis.Redis(unix_socket_path=str(socket), socket_timeout=30)
    deadline = time.monotonic() + 15
    while True:
        try:
            if socket.exists() and client.ping():
                return process, client
        except redis.RedisError:
            pass
        if time.monotonic() > deadline or process.poll() is not None:
            raise RuntimeError("The Valkey server did not start; see redis.log in the state folder.")
        time.sleep(0.05)


def start(command: list[str], env: dict, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            preexec_fn=_die_with_parent)  # fmt: skip


def wait_until(predicate, *, timeout: float, what: str, process: subprocess.Popen | None = None, log_path=None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            tail = Path(log_path).read_text(errors="replace")[-3000:] if log_path else ""
            raise RuntimeError(f"{what}: the process exited with code {process.returncode}\n{tail}")
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise RuntimeError(f"Timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen | None, timeout: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def process_usage(pid: int) -> dict:
    """CPU seconds and peak resident memory of a running process (Linux /proc)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        status = Path(f"/proc/{pid}/status").read_text()
        peak = re.search(r"VmHWM:\s+(\d+) kB", status)
        return {"cpu_seconds": round(cpu, 2), "peak_rss_mb": round(int(peak.group(1)) / 1024, 1) if peak else None}
    except (OSError, IndexError, ValueError):
        return {}


# --- measuring ----------------------------------------------------------------------------


class Sampler(threading.Thread):
    """Every SAMPLE_EVERY seconds: the monitor's counts of TASK, the results done, the queue depth."""

    def __init__(self, client, queue_keys: list[str], task_name: str = TASK):
        super().__init__(daemon=True, name="sampler")
        self.task_name = task_name
        self.client = client
        self.queue_keys = queue_keys
        self.samples: list[dict] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        from django.db import connection
        from django_celery_results.models import TaskResult

        from taskcenter.models import TaskTotals

        try:
            while not self.stopping.is_set():
                at = time.time()
                totals = TaskTotals.objects.filter(task_name=self.task_name).values_list("sent", "started", "succeeded")
                sent = started = succeeded = 0
                for s, st, su in totals:
                    sent, started, succeeded = sent + s, started + st, succeeded + su
                done = TaskResult.objects.filter(status="SUCCESS").count()
                pipe = self.client.pipeline(transaction=False)
                for key in self.queue_keys:
                    pipe.llen(key)
                depth = sum(pipe.execute())
                self.samples.append({"t": at, "sent": sent, "started": started, "succeeded": succeeded,
                                     "done": done, "depth": depth})  # fmt: skip
                self.stopping.wait(SAMPLE_EVERY)
        finally:
            connection.close()

    def latest(self) -> dict:
        return self.samples[-1] if self.samples else {"sent": 0, "started": 0, "succeeded": 0, "done": 0, "depth": 0}


def lag_figures(samples: list[dict], key: str, truth: list[float], n: int) -> dict:
    """Lag of the monitor's ``key`` count behind ``truth`` (sorted times at which the k-th thing happened)."""
    lags, behind, reached = [], [], None
    for s in samples:
        m = s[key]
        if reached is None and m >= n:
            reached = s["t"]
        happened = bisect.bisect_right(truth, s["t"])
        behind.append(max(0, happened - m))
        if m < happened:  # something happened that the monitor does not show yet
            lags.append(s["t"] - truth[m])  # the (m+1)-th happened at truth[m] and is not counted yet
    return {
        "max_lag_seconds": round(max(lags), 2) if lags else 0.0,
        "lag_at_end_seconds": round(reached - truth[-1], 2) if reached and truth else None,
        "max_tasks_behind": max(behind) if behind else 0,
        "reached_n": reached is not None,
    }


def rate_between(times: list[float], low: float = 0.1, high: float = 0.9) -> float | None:
    """Tasks per second between the ``low`` and ``high`` shares of the sorted ``times``."""
    if len(times) < 10:
        return None
    a, b = int(len(times) * low), int(len(times) * high) - 1
    span = times[b] - times[a]
    return (b - a) / span if span > 0 else None


def peak_rate(times: list[float], window: float = 1.0) -> float:
    best, j = 0, 0
    for i in range(len(times)):
        while times[i] - times[j] > window:
            j += 1
        best = max(best, i - j + 1)
    return best / window


def final_counts(task_name: str = TASK) -> dict:
    from taskcenter.models import TaskMinute, TaskTotals

    totals = list(TaskTotals.objects.filter(task_name=task_name))
    minutes = list(TaskMinute.objects.filter(task_name=task_name))
    return {
        "totals": {name: sum(getattr(t, name) for t in totals) for name in ("sent", "started", "succeeded", "failed")}
        | {
            "runtime_observations": sum(sum(t.runtime_buckets) for t in totals),
            "wait_observations": sum(sum(t.wait_buckets) for t in totals),
        },
        "minutes": {name: sum(getattr(m, name) for m in minutes) for name in ("sent", "started", "succeeded")}
        | {"rows": len(minutes), "runtime_observations": sum(sum(m.runtime_buckets) for m in minutes)},
    }


def versions(client) -> dict:
    from importlib.metadata import version

    info = client.info("server")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "python": platform.python_version(),
        **{name: version(name) for name in ("Django", "celery", "kombu", "redis")},
        "valkey": info.get("valkey_version") or info.get("redis_version"),
        "cpus": os.cpu_count(),
        "cpu": cpu,
    }


# --- the run ------------------------------------------------------------------------------


def publish(n: int) -> list[float]:
    """Publish ``n`` ``examples.add`` tasks over one producer; return the time each publish returned."""
    from celery import current_app

    task = current_app.tasks[TASK]
    times = []
    with current_app.producer_or_acquire() as producer:
        for i in range(n):
            task.apply_async(args=[i, 1], producer=producer)
            times.append(time.time())
    return times


def send_synthetic_events(n: int) -> list[float]:
    """Send the four events of ``n`` fake tasks, buffered as a worker does; return when each task's were sent."""
    from celery import current_app

    times = []
    with current_app.connection_for_write() as conn:
        dispatcher = current_app.events.Dispatcher(
            conn, hostname=f"bench-synthetic-{os.getpid()}@localhost", buffer_group=["task"], buffer_limit=24
        )
        for i in range(n):
            uid = f"synthetic-{i}"
            dispatcher.send("task-sent", uuid=uid, name=SYNTHETIC_TASK, queue="high", routing_key="high")
            dispatcher.send("task-received", uuid=uid, name=SYNTHETIC_TASK)
            dispatcher.send("task-started", uuid=uid)
            dispatcher.send("task-succeeded", uuid=uid, runtime=0.0005)
            times.append(time.time())
        dispatcher.flush()
        dispatcher.close()
    return times


def run_synthetic(args, sampler: Sampler, monitor: subprocess.Popen, monitor_log: Path) -> dict:
    logger.info("sending the events of %d fake tasks ...", args.tasks)
    sent = send_synthetic_events(args.tasks)
    seconds = sent[-1] - sent[0]
    logger.info("sent %d events in %.1f s (%.0f/s)", 4 * args.tasks, seconds, 4 * args.tasks / max(seconds, 1e-9))
    try:
        wait_until(lambda: sampler.latest()["succeeded"] >= args.tasks, timeout=args.timeout,
                   what="the monitor to count every fake task", process=monitor, log_path=monitor_log)  # fmt: skip
    except RuntimeError as exc:
        logger.warning("%s", exc)
    time.sleep(3 * (args.flush_interval or 2))
    sampler.stopping.set()
    sampler.join()
    usage = process_usage(monitor.pid)
    stop(monitor)
    counts = final_counts(SYNTHETIC_TASK)
    lag = lag_figures(sampler.samples, "succeeded", sent, args.tasks)
    reached = next((s["t"] for s in sampler.samples if s["succeeded"] >= args.tasks), None)
    events = re.findall(r"stopped after (\d+) events", monitor_log.read_text(errors="replace"))
    return {
        "tasks": args.tasks,
        "mode": args.mode,
        "flush_interval": args.flush_interval or 2.0,
        "events_sent": 4 * args.tasks,
        "send": {"seconds": round(seconds, 2), "events_per_second": round(4 * args.tasks / seconds, 1)},
        "monitor": {
            **counts,
            "exact": all(counts["totals"][k] == args.tasks for k in ("sent", "started", "succeeded"))
            and counts["minutes"]["succeeded"] == args.tasks,
            "succeeded_lag": lag,
            # From the first event sent to the flush that showed the last one: includes up to one flush interval.
            "events_per_second_counted": round(4 * args.tasks / (reached - sent[0]), 1) if reached else None,
            "events_processed": int(events[-1]) if events else None,
            "process": usage,
        },
    }


def run(args, state_dir: Path) -> dict:
    env = prepare_environment(state_dir)
    logger.info("state folder %s; migrating ...", state_dir)
    migrate(env)
    redis_process = monitor = worker = None
    sampler = None
    try:
        redis_process, client = start_redis(state_dir)
        monitor_log = state_dir / "monitor.log"
        command = [PYTHON, "manage.py", "taskcenter_monitor"]
        if args.flush_interval:
            command += ["--flush-interval", str(args.flush_interval)]
        monitor = start(command, env, monitor_log)
        wait_until(lambda: "consuming events" in monitor_log.read_text(errors="replace"), timeout=60,
                   what="the monitor to consume events", process=monitor, log_path=monitor_log)  # fmt: skip

        from celery import current_app

        with current_app.connection_for_write() as conn:
            channel = conn.default_channel
            queue_keys = [channel._q_for_pri("high", step) for step in channel.priority_steps]
        sampler = Sampler(client, queue_keys, SYNTHETIC_TASK if args.mode == "synthetic" else TASK)
        sampler.start()
        if args.mode == "synthetic":
            return {**run_synthetic(args, sampler, monitor, monitor_log), "versions": versions(client)}

        worker_log = state_dir / "worker.log"
        hostname = f"bench-{os.getpid()}@localhost"

        def start_worker():
            process = start(
                [PYTHON, "-m", "celery", "-A", "config", "worker", f"--concurrency={args.concurrency}",
                 f"--loglevel={args.worker_loglevel}", f"--hostname={hostname}", "--without-mingle",
                 "--without-gossip"],
                env, worker_log,
            )  # fmt: skip
            wait_until(lambda: current_app.control.ping(destination=[hostname], timeout=0.5), timeout=60,
                       what="the worker to answer", process=process, log_path=worker_log)  # fmt: skip
            return process

        if args.mode == "concurrent":
            worker = start_worker()
        logger.info("publishing %d %s tasks (%s mode) ...", args.tasks, TASK, args.mode)
        published = publish(args.tasks)
        publish_seconds = published[-1] - published[0]
        logger.info("published in %.1f s (%.0f/s)", publish_seconds, args.tasks / max(publish_seconds, 1e-9))
        if args.mode == "backlog":
            wait_until(lambda: sampler.latest()["sent"] >= args.tasks, timeout=120, what="the monitor to count sends")
            logger.info("monitor counted every send; starting the worker")
            worker = start_worker()

        def all_counted():
            latest = sampler.latest()
            if worker.poll() is not None:
                raise RuntimeError(f"the worker exited:\n{worker_log.read_text(errors='replace')[-3000:]}")
            return latest["done"] >= args.tasks and latest["succeeded"] >= args.tasks

        last_report = time.monotonic()
        deadline = time.monotonic() + args.timeout
        while not all_counted():
            if time.monotonic() > deadline:
                logger.warning("gave up after %.0f s", args.timeout)
                break
            if time.monotonic() - last_report > 5:
                latest = sampler.latest()
                logger.info("  done %d, monitor succeeded %d, queue depth %d",
                            latest["done"], latest["succeeded"], latest["depth"])  # fmt: skip
                last_report = time.monotonic()
            time.sleep(0.2)
        time.sleep(3 * (args.flush_interval or 2))  # a few more flushes: nothing may be counted twice
        sampler.stopping.set()
        sampler.join()
        usage = process_usage(monitor.pid)
        stop(worker)
        stop(monitor)
        events = re.findall(r"stopped after (\d+) events", monitor_log.read_text(errors="replace"))

        from django_celery_results.models import TaskResult

        results = TaskResult.objects.filter(status="SUCCESS")
        done_times = sorted(r.timestamp() for r in results.values_list("date_done", flat=True))
        started_times = sorted(r.timestamp() for r in results.values_list("date_started", flat=True) if r)
        drain_seconds = done_times[-1] - started_times[0] if done_times and started_times else None
        counts = final_counts()
        samples = sampler.samples
        return {
            "tasks": args.tasks,
            "mode": args.mode,
            "concurrency": args.concurrency,
            "worker_loglevel": args.worker_loglevel,
            "flush_interval": args.flush_interval or 2.0,
            "versions": versions(client),
            "publish": {"seconds": round(publish_seconds, 2), "per_second": round(args.tasks / publish_seconds, 1)},
            "worker": {
                "finished": len(done_times),
                "drain_seconds": round(drain_seconds, 2) if drain_seconds else None,
                "per_second": round(len(done_times) / drain_seconds, 1) if drain_seconds else None,
                "per_second_p10_p90": round(rate_between(done_times) or 0, 1),
                "peak_per_second_1s": peak_rate(done_times),
            },
            "monitor": {
                **counts,
                "exact": all(counts["totals"][k] == args.tasks for k in ("sent", "started", "succeeded"))
                and counts["minutes"]["succeeded"] == args.tasks
                and counts["totals"]["runtime_observations"] == args.tasks
                and counts["totals"]["wait_observations"] == args.tasks,
                "succeeded_lag": lag_figures(samples, "succeeded", done_times, args.tasks),
                "sent_lag": lag_figures(samples, "sent", sorted(published), args.tasks),
                "events_processed": int(events[-1]) if events else None,
                "process": usage,
            },
        }
    finally:
        if sampler is not None:
            sampler.stopping.set()
        stop(worker)
        stop(monitor)
        stop(redis_process)


def report(r: dict) -> None:
    if r["mode"] == "synthetic":
        m = r["monitor"]
        logger.info("%d fake tasks, %d events sent in %.1f s (%.0f events/s), monitor flush every %g s",
                    r["tasks"], r["events_sent"], r["send"]["seconds"], r["send"]["events_per_second"],
                    r["flush_interval"])  # fmt: skip
        logger.info("monitor totals %s; exact: %s", m["totals"], m["exact"])
        lag = m["succeeded_lag"]
        logger.info("monitor: %s events/s counted, lag max %.2f s, at the end %s s, at most %d tasks behind",
                    m["events_per_second_counted"], lag["max_lag_seconds"], lag["lag_at_end_seconds"],
                    lag["max_tasks_behind"])  # fmt: skip
        logger.info("monitor process: %s events, %s", m["events_processed"], m["process"])
        return
    m, w = r["monitor"], r["worker"]
    logger.info("%d tasks, %s mode, worker -c %d (loglevel %s), monitor flush every %g s",
                r["tasks"], r["mode"], r["concurrency"], r["worker_loglevel"], r["flush_interval"])  # fmt: skip
    logger.info("publish: %.1f s, %.0f tasks/s (one publisher, Run row + task-sent event each)",
                r["publish"]["seconds"], r["publish"]["per_second"])  # fmt: skip
    logger.info("worker: %d finished in %s s: %s tasks/s overall, %s tasks/s from 10%% to 90%%, peak %s in 1 s",
                w["finished"], w["drain_seconds"], w["per_second"], w["per_second_p10_p90"],
                w["peak_per_second_1s"])  # fmt: skip
    logger.info("monitor totals %s; minute rows %s; exact: %s", m["totals"], m["minutes"], m["exact"])
    for name in ("sent_lag", "succeeded_lag"):
        lag = m[name]
        logger.info("monitor %s: max %.2f s, at the end %s s, at most %d tasks behind, reached N: %s",
                    name.replace("_", " "), lag["max_lag_seconds"], lag["lag_at_end_seconds"],
                    lag["max_tasks_behind"], lag["reached_n"])  # fmt: skip
    logger.info("monitor process: %s events, %s", m["events_processed"], m["process"])


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    args = parse_args(argv)
    state_dir = Path(args.state_dir or f"/tmp/tcm-{os.getpid()}").resolve()
    if state_dir.exists() and any(state_dir.iterdir()):
        raise SystemExit(f"{state_dir} is not empty; pass another --state-dir.")
    state_dir.mkdir(parents=True, exist_ok=True)
    try:
        result = run(args, state_dir)
        report(result)
        if args.out:
            Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
            logger.info("figures written to %s", args.out)
        return 0 if result["monitor"]["exact"] else 1
    finally:
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
