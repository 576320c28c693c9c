#!/usr/bin/env python
"""How late does celery beat send due periodic tasks when there are many schedules,
and how long does one edit stall dispatch?

Self-contained: the script makes its own state folder under /tmp (SQLite database,
Valkey data), migrates, starts a real Valkey server (``taskcenter.embedded_redis``),
bulk-creates the schedules, runs a real ``celery -A config beat -S <scheduler>`` and,
while beat runs, edits one schedule through ``taskcenter.services.schedules``. No
worker runs: every message beat publishes stays in the Redis queue, and afterwards
the script reads them all back. Each message carries the publisher's clock in its
``taskcenter_sent_at`` header (stamped by taskcenter's ``before_task_publish``
receiver) and the schedule in ``periodic_task_name``.

Load: ``--schedules`` interval schedules of ``examples.add``, every ``--period``
seconds (60), with ``last_run_at`` staggered so that their first due times are
spread evenly over one period starting ``--lead`` seconds after beat starts
(10,000 schedules every 60 s: one run due every 6 ms, ~167 per second). Optionally a
share of the schedules are daily crontabs (``--crontab-share``) at times that are not
due during the run: they cost loading and memory but send nothing.

Lateness of a run = (publish time) - (due time). The first due time of a schedule
is the one the script seeded; the next one is the previous publish + period (beat
restarts an interval from the moment it sent). Runs due in the measurement window
[first due, first due + ``--duration``] count; a run due in the window but not sent
when the script stops counts with its lateness at that moment (a lower bound).

Edit cost: at the middle of the window (``--edits`` spreads several evenly) the script
changes the keyword arguments of one schedule that is not due soon with
``schedule_save`` (a ``PeriodicTask.save()``, which bumps ``PeriodicTasks`` so beat
notices). Reported per edit: how long the save took, the longest pause between two
publishes in the ``--edit-window`` seconds after it (compared with the longest pause
elsewhere), and the lateness of runs due in that window.

    .venv/bin/python bench/beat_lateness.py --schedules 10000 --duration 60 \\
        --scheduler django_celery_beat.schedulers:DatabaseScheduler
    .venv/bin/python bench/beat_lateness.py --schedules 10000 --duration 60 \\
        --scheduler taskcenter.scheduler:TaskcenterScheduler

Results: a summary on stdout and a JSON file in bench/results/. This is a benchmark,
not a test: nothing here asserts on timings.
"""

import argparse
import ctypes
import json
import os
import platform
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
TASK = "examples.add"
NAME_PREFIX = "bench-"


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--schedules", type=int, default=10_000, help="number of periodic tasks (default 10000)")
    parser.add_argument("--duration", type=float, default=60, help="measurement window in seconds (default 60)")
    parser.add_argument(
        "--scheduler",
        default="django_celery_beat.schedulers:DatabaseScheduler",
        help="beat scheduler class, e.g. taskcenter.scheduler:TaskcenterScheduler",
    )
    parser.add_argument("--period", type=int, default=60, help="interval of every schedule in seconds (default 60)")
    parser.add_argument(
        "--lead",
        type=float,
        default=None,
        help="seconds from starting beat to the first due run (default: 15 + 2 ms per schedule)",
    )
    parser.add_argument("--tail", type=float, default=15, help="seconds to keep beat running after the window")
    parser.add_argument("--edits", type=int, default=1, help="schedules edited during the window (default 1)")
    parser.add_argument("--edit-window", type=float, default=20, help="seconds after an edit that count as its effect")
    parser.add_argument(
        "--crontab-share", type=float, default=0.0, help="share of schedules that are daily crontabs not due in the run"
    )
    parser.add_argument("--bucket", type=float, default=5, help="seconds per line of the lateness timeline")
    parser.add_argument("--beat-loglevel", default="INFO", help="beat log level (Procfile default: INFO)")
    parser.add_argument("--max-interval", type=int, default=None, help="beat --max-interval (default: the scheduler's)")
    parser.add_argument(
        "--profile", action="store_true", help="run beat under cProfile and report its most expensive functions"
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=300,
        help="wait up to this many seconds for other processes to leave the CPUs mostly idle (default 300)",
    )
    parser.add_argument(
        "--hold-connection",
        action="store_true",
        help="keep one idle SQLite connection open during the run, as a web or worker process with "
        "persistent connections would",
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="run on this database (e.g. postgres://user@host/bench) instead of a new SQLite file; "
        "it must be a database of its own: the script empties it first",
    )
    parser.add_argument("--state-dir", default=None, help="state folder (default: a new /tmp/tcb-<pid>)")
    parser.add_argument("--keep", action="store_true", help="keep the state folder (database, Redis data, beat log)")
    parser.add_argument("--out", default=None, help="JSON results file (default: bench/results/<scheduler>-<N>.json)")
    parser.add_argument("--label", default=None, help="name of the run in the results")
    args = parser.parse_args(argv)
    if args.lead is None:
        args.lead = 15 + 0.002 * args.schedules
    return args


# --- environment ------------------------------------------------------------------------


def _die_with_parent() -> None:
    """Children get SIGTERM if this script dies, so no server or beat outlives it."""
    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def prepare_environment(state_dir: Path, database_url: str | None = None) -> dict:
    """Environment of this process and its children: own database and broker, nothing shared."""
    redis_socket = state_dir / "redis" / "redis.sock"
    for key in ("DATABASE_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND"):
        os.environ.pop(key, None)
    if database_url:
        os.environ["DATABASE_URL"] = database_url
    os.environ.update(
        DEBUG="true",
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
    if env.get("DATABASE_URL"):  # a database given with --database-url: start from empty tables
        subprocess.run([PYTHON, "manage.py", "flush", "--noinput", "-v", "0"], cwd=ROOT, env=env, check=True)


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


def stop(process: subprocess.Popen | None, timeout: float = 30) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


# --- schedules ----------------------------------------------------------------------


def create_schedules(args, first_due: float) -> dict[str, float]:
    """Bulk-create the schedules; return {name: first due time (Unix s)} of the interval ones."""
    from django.conf import settings
    from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask, PeriodicTasks

    from taskcenter.models import SchedulePolicy

    n_cron = int(round(args.schedules * args.crontab_share))
    n_interval = args.schedules - n_cron
    interval, _ = IntervalSchedule.objects.get_or_create(every=args.period, period=IntervalSchedule.SECONDS)
    due: dict[str, float] = {}
    tasks = []
    for i in range(n_interval):
        name = f"{NAME_PREFIX}{i:06d}"
        due[name] = first_due + (i + 0.5) * args.period / n_interval
        tasks.append(
            PeriodicTask(
                name=name,
                task=TASK,
                kwargs=json.dumps({"x": i, "y": 1}),
                interval=interval,
                # Beat counts an interval from the last run; a future value (at most --lead ahead)
                # only means "not due before last_run_at + period".
                last_run_at=datetime.fromtimestamp(due[name] - args.period, UTC),
            )
        )
    for j, (hour, minute) in enumerate(_quiet_crontab_times(n_cron, args, settings.TIME_ZONE)):
        crontab, _ = CrontabSchedule.objects.get_or_create(
            minute=str(minute), hour=str(hour), day_of_month="*", month_of_year="*", day_of_week="*",
            timezone=settings.TIME_ZONE,
        )  # fmt: skip
        tasks.append(
            PeriodicTask(
                name=f"{NAME_PREFIX}cron-{j:06d}", task=TASK, kwargs=json.dumps({"x": j, "y": 2}), crontab=crontab
            )
        )
    created = PeriodicTask.objects.bulk_create(tasks, batch_size=500)
    # Every schedule made through taskcenter has a policy row; give these one too.
    SchedulePolicy.objects.bulk_create([SchedulePolicy(periodic_task=task) for task in created], batch_size=500)
    PeriodicTasks.update_changed()
    return due


def _quiet_crontab_times(count: int, args, tz_name: str):
    """Daily (hour, minute) pairs spread over the day, none within the run (nor 15 min around it)."""
    from zoneinfo import ZoneInfo

    if not count:
        return []
    start = datetime.now(ZoneInfo(tz_name)) - timedelta(minutes=15)
    busy = args.lead + args.duration + args.tail + 60 * 30
    avoid = {
        ((start + timedelta(minutes=m)).hour, (start + timedelta(minutes=m)).minute) for m in range(int(busy / 60))
    }
    free = [(h, m) for h in range(24) for m in range(60) if (h, m) not in avoid]
    return [free[(k * len(free)) // count] for k in range(count)]


def edit_schedule(name: str) -> dict:
    """Change one schedule's keyword arguments through the service, as an operator would."""
    from django.db import connection
    from django_celery_beat.models import PeriodicTask

    from taskcenter.services.schedules import ScheduleSpec, schedule_save

    started = time.time()
    task = PeriodicTask.objects.select_related("interval", "crontab", "clocked", "solar").get(name=name)
    spec = ScheduleSpec.from_periodic_task(task)
    spec.kwargs = {**spec.kwargs, "y": spec.kwargs.get("y", 0) + 1000}
    schedule_save(spec=spec, actor=None, existing=task)
    finished = time.time()
    connection.close()  # hold no read snapshot or lock on the SQLite file while beat runs
    return {"schedule": name, "at": started, "save_seconds": finished - started}


# --- beat -----------------------------------------------------------------------------


def start_beat(args, env: dict, log_path: Path) -> subprocess.Popen:
    command = [PYTHON, "-m", "celery", "-A", "config", "beat", "-S", args.scheduler,
               f"--loglevel={args.beat_loglevel}", "--pidfile="]  # fmt: skip
    if args.profile:
        # cProfile writes its file when beat exits on SIGTERM (SystemExit).
        command[1:1] = ["-m", "cProfile", "-o", str(log_path.with_suffix(".prof"))]
    if args.max_interval:
        command.append(f"--max-interval={args.max_interval}")
    log = open(log_path, "ab")  # noqa: SIM115 (closed with the process)
    return subprocess.Popen(
        command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_die_with_parent
    )


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


def machine_busy_seconds() -> float:
    """CPU seconds all cores spent on anything but idling since boot (Linux /proc/stat)."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def wait_for_quiet(limit: float, max_share: float = 0.25, sample: float = 3.0) -> dict:
    """Wait (up to ``limit`` s) until other processes use under ``max_share`` of the machine."""
    started = time.time()
    while True:
        before = machine_busy_seconds()
        time.sleep(sample)
        share = (machine_busy_seconds() - before) / sample / (os.cpu_count() or 1)
        if share < max_share or time.time() - started >= limit:
            return {"waited_seconds": round(time.time() - started, 1), "busy_share_at_start": round(share, 3)}


def sleep_until(moment: float, beat: subprocess.Popen, log_path: Path) -> None:
    while (left := moment - time.time()) > 0:
        if beat.poll() is not None:
            tail = log_path.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"beat exited with code {beat.returncode}:\n{tail}")
        time.sleep(min(left, 0.2))


# --- measurement -------------------------------------------------------------------------


def read_sends(client) -> dict[str, list[float]]:
    """{schedule name: sorted publish times} of every message beat left in the queues."""
    sends: dict[str, list[float]] = {}
    for key in client.scan_iter(count=1000):
        if client.type(key) != b"list":
            continue
        length = client.llen(key)
        for start in range(0, length, 5000):
            for raw in client.lrange(key, start, start + 4999):
                headers = json.loads(raw).get("headers") or {}
                name = headers.get("periodic_task_name")
                sent = headers.get("taskcenter_sent_at")
                if name and name.startswith(NAME_PREFIX) and sent is not None:
                    sends.setdefault(name, []).append(float(sent))
    for times in sends.values():
        times.sort()
    return sends


def percentile(values: list[float], q: float) -> float | None:
    """The q-th percentile (0-100), linear between closest ranks."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def lateness_stats(values: list[float]) -> dict:
    return {
        "count": len(values),
        "p50": percentile(values, 50),
        "p95": percentile(values, 95),
        "p99": percentile(values, 99),
        "max": max(values) if values else None,
    }


def analyse(args, due: dict[str, float], sends: dict[str, list[float]], window: tuple[float, float],
            stopped_at: float, edits: list[dict]) -> dict:  # fmt: skip
    start, end = window
    edited = {edit["schedule"] for edit in edits}
    runs = []  # (due, sent or None)
    for name, first in due.items():
        if name in edited:
            continue
        expected = first
        for sent in (t for t in sends.get(name, []) if t <= stopped_at):
            runs.append((expected, sent))
            expected = sent + args.period  # beat counts the next interval from this send
        runs.append((expected, None))  # the next run, not sent (yet) when the script stopped
    in_window = [(d, s) for d, s in runs if start <= d <= end]
    sent = [(d, s) for d, s in in_window if s is not None]
    unsent = [(d, s) for d, s in in_window if s is None and d <= stopped_at]
    sent_lateness = [s - d for d, s in sent]
    all_lateness = sent_lateness + [stopped_at - d for d, _ in unsent]

    publishes = sorted(s for times in sends.values() for s in times if start <= s <= stopped_at)
    edit_ranges = [(e["at"], e["at"] + args.edit_window) for e in edits]

    def gaps(select) -> list[float]:
        return [b - a for a, b in zip(publishes, publishes[1:], strict=False) if select(b)]

    quiet_gaps = gaps(lambda b: b <= end and not any(lo - 1 <= b <= hi for lo, hi in edit_ranges))
    timeline = []
    step = args.bucket
    for k in range(int((end - start) / step + 0.999)):
        lo, hi = start + k * step, min(start + (k + 1) * step, end)
        late = [(s - d) if s is not None else stopped_at - d for d, s in in_window if lo <= d < hi]
        timeline.append({"from": lo - start, "due": len(late), **lateness_stats(late)})
    # Publishes per second by publish time; while beat has a backlog this is its capacity.
    per_second = [0] * (int(stopped_at - start) + 1)
    for sent_at in publishes:
        per_second[int(sent_at - start)] += 1
    five_second = [sum(per_second[i : i + 5]) / 5 for i in range(max(1, len(per_second) - 4))]
    result = {
        "window_seconds": end - start,
        "due_per_second": len(due) / args.period,
        "runs_due_in_window": len(in_window),
        "runs_sent": len(sent),
        "runs_not_sent_by_stop": len(unsent),
        "lateness_sent": lateness_stats(sent_lateness),
        # Unsent runs count with their lateness at the stop: lower bounds, so these are too.
        "lateness_all": lateness_stats(all_lateness),
        "late_over_1s": sum(1 for x in all_lateness if x > 1),
        "throughput_per_second": len([s for s in publishes if s <= end]) / (end - start),
        "max_rate_5s": max(five_second),
        "publishes_per_second": per_second,
        "gap_p99_without_edit": percentile(quiet_gaps, 99),
        "gap_max_without_edit": max(quiet_gaps) if quiet_gaps else None,
        "timeline": timeline,
        "edits": [],
    }
    for edit, (lo, hi) in zip(edits, edit_ranges, strict=True):
        after = gaps(lambda b, lo=lo, hi=hi: lo <= b <= hi)
        before = [s - d for d, s in sent if lo - args.edit_window <= d < lo]
        following = [(s - d) if s is not None else stopped_at - d for d, s in in_window if lo <= d <= hi]
        result["edits"].append(
            {
                **edit,
                "offset_in_window": lo - start,
                "longest_pause_after": max(after) if after else None,
                "lateness_p99_before": percentile(before, 99),
                "lateness_p99_after": percentile(following, 99),
                "lateness_max_after": max(following) if following else None,
            }
        )
    return result


def profile_top(path: Path, count: int = 20) -> dict:
    """Where beat spent its time, from its cProfile file: by cumulative and by own time."""
    import pstats

    if not path.exists():
        return {}
    stats = pstats.Stats(str(path))
    rows = []
    for (filename, line, function), (_cc, calls, own, cumulative, _callers) in stats.stats.items():
        where = filename.split("site-packages/")[-1].replace(str(ROOT) + "/", "")
        rows.append({"function": f"{where}:{line}({function})", "calls": calls, "own": own, "cumulative": cumulative})
    # Leave out the start-up frames above the beat loop (runpy, click, celery's command line).
    loop = next((row["cumulative"] for row in rows if row["function"].startswith("celery/beat.py") and
                 row["function"].endswith("(start)")), None)  # fmt: skip
    inner = [row for row in rows if loop is None or row["cumulative"] < loop]

    def top(key):
        chosen = sorted(inner, key=lambda row: row[key], reverse=True)[:count]
        return [{**row, "own": round(row["own"], 2), "cumulative": round(row["cumulative"], 2)} for row in chosen]

    return {"beat_loop_seconds": loop, "by_cumulative": top("cumulative"), "by_own": top("own")}


# --- report ------------------------------------------------------------------------------


def scheduler_source(path: str) -> dict:
    """File, checksum and modification time of the scheduler's module (it may be work in progress)."""
    import hashlib
    import importlib.util

    spec = importlib.util.find_spec(path.split(":", 1)[0])
    if spec is None or not spec.origin or not Path(spec.origin).is_file():
        return {}
    origin = Path(spec.origin)
    return {
        "file": str(origin).replace(str(ROOT) + "/", ""),
        "md5": hashlib.md5(origin.read_bytes()).hexdigest(),
        "modified": datetime.fromtimestamp(origin.stat().st_mtime, UTC).isoformat(timespec="seconds"),
    }


def versions(client) -> dict:
    from importlib.metadata import version

    info = client.info("server")
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")), platform.processor())  # fmt: skip
    return {
        "python": platform.python_version(),
        **{name: version(name) for name in ("Django", "celery", "kombu", "django-celery-beat", "redis")},
        "valkey": info.get("valkey_version") or info.get("redis_version"),
        "sqlite": sqlite3.sqlite_version,
        "database": _database_version(),
        "cpus": os.cpu_count(),
        "cpu": cpu,
        "platform": platform.platform(),
    }


def _database_version() -> str:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT sqlite_version()" if connection.vendor == "sqlite" else "SELECT version()")
        return f"{connection.vendor} {cursor.fetchone()[0]}"


def fmt(seconds: float | None, lower_bound: bool = False) -> str:
    if seconds is None:
        return "-"
    text = f"{seconds * 1000:.0f} ms" if abs(seconds) < 1 else f"{seconds:.2f} s"
    return ("≥ " if lower_bound else "") + text


def summary(report: dict) -> str:
    r = report["results"]
    censored = r["runs_not_sent_by_stop"] > 0
    lines = [
        f"{report['label']}: {report['schedules']} schedules, {r['due_per_second']:.0f} due/s, "
        f"{r['window_seconds']:.0f} s window, scheduler {report['scheduler']}, "
        f"database {report['versions']['database'].split(' (')[0][:40]}",
        f"  beat started {report['seconds_from_beat_start_to_window']:.1f} s before the first due run; "
        f"beat CPU {report['beat'].get('cpu_seconds')} s, peak RSS {report['beat'].get('peak_rss_mb')} MB",
        f"  during window+tail: beat used {report['cpu_during_window']['beat_cpu_seconds']} CPU s, everything else "
        f"{report['cpu_during_window']['other_cpu_seconds']} CPU s "
        f"({report['cpu_during_window']['other_share_of_machine']:.0%} of the machine)",
        f"  runs due {r['runs_due_in_window']}, sent {r['runs_sent']}, not sent by stop {r['runs_not_sent_by_stop']}, "
        f"throughput {r['throughput_per_second']:.1f}/s (best 5 s: {r['max_rate_5s']:.0f}/s), "
        f"late > 1 s: {r['late_over_1s']}",
    ]
    for title, stats, bound in (
        ("sent runs", r["lateness_sent"], False),
        ("all due runs", r["lateness_all"], censored),
    ):
        lines.append(
            f"  lateness ({title}): p50 {fmt(stats['p50'], bound)}, p95 {fmt(stats['p95'], bound)}, "
            f"p99 {fmt(stats['p99'], bound)}, max {fmt(stats['max'], bound)}"
        )
    lines.append(
        f"  pauses between publishes without an edit: p99 {fmt(r['gap_p99_without_edit'])}, "
        f"max {fmt(r['gap_max_without_edit'])}"
    )
    for edit in r["edits"]:
        lines.append(
            f"  edit at +{edit['offset_in_window']:.0f} s (save {fmt(edit['save_seconds'])}): longest pause "
            f"{fmt(edit['longest_pause_after'])}, lateness p99 before {fmt(edit['lateness_p99_before'])} -> after "
            f"{fmt(edit['lateness_p99_after'])}, max after {fmt(edit['lateness_max_after'])}"
        )
    lines.append("  timeline by due time (start, due, p50, p99, max; unsent runs count as late as at the stop):")
    for b in r["timeline"]:
        lines.append(
            f"    +{b['from']:>4.0f} s {b['due']:>6}  {fmt(b['p50']):>9}  {fmt(b['p99']):>9}  {fmt(b['max']):>9}"
        )
    profile = report.get("profile")
    if profile:
        lines.append(f"  beat profile: {profile['beat_loop_seconds']:.1f} s in the beat loop (under cProfile)")
        for key in ("by_cumulative", "by_own"):
            lines.append(f"  {key.replace('_', ' ')} (cumulative s, own s, calls):")
            for row in profile[key]:
                lines.append(f"    {row['cumulative']:>8.2f} {row['own']:>8.2f} {row['calls']:>9}  {row['function']}")
    return "\n".join(lines)


def say(text: str) -> None:
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def main(argv=None) -> int:
    args = parse_args(argv)
    state_dir = Path(args.state_dir or f"/tmp/tcb-{os.getpid()}").resolve()
    if state_dir.exists() and any(state_dir.iterdir()):
        raise SystemExit(f"{state_dir} is not empty; pass another --state-dir.")
    state_dir.mkdir(parents=True, exist_ok=True)
    short = args.scheduler.rsplit(":", 1)[-1].lower()
    label = args.label or f"{short}-{args.schedules}"
    out = Path(args.out) if args.out else ROOT / "bench" / "results" / f"{label}.json"
    beat_log = state_dir / "beat.log"
    redis_process = beat = holder = None
    try:
        if args.database_url and args.hold_connection:
            raise SystemExit("--hold-connection is about SQLite; leave it out with --database-url.")
        env = prepare_environment(state_dir, args.database_url)
        say(f"state folder {state_dir}; migrating ...")
        migrate(env)
        redis_process, client = start_redis(state_dir)
        quiet = wait_for_quiet(args.wait_quiet)
        if quiet["waited_seconds"] > 5:
            say(
                f"waited {quiet['waited_seconds']:.0f} s for a quiet machine "
                f"(busy share {quiet['busy_share_at_start']})"
            )
        load_before = os.getloadavg()

        created_at = time.time()
        due = create_schedules(args, first_due=created_at + args.lead)
        # This process keeps no SQLite connection open while beat runs (the edit opens and
        # closes its own), unless --hold-connection asks for one open all along: SQLite
        # checkpoints and removes the WAL whenever the last connection closes, which beat,
        # closing its connection on every tick (CONN_MAX_AGE 0), then does each time.
        from django.db import connections

        connections.close_all()
        holder = sqlite3.connect(state_dir / "taskcenter.sqlite3") if args.hold_connection else None
        if holder is not None:
            holder.execute("SELECT count(*) FROM sqlite_master").fetchall()  # opens the file and the WAL
        first_due = min(due.values()) - 0.5 * args.period / len(due)
        window = (first_due, first_due + args.duration)
        say(f"created {args.schedules} schedules in {time.time() - created_at:.1f} s; starting beat")
        source = scheduler_source(args.scheduler)  # the file beat is about to load
        beat_started = time.time()
        beat = start_beat(args, env, beat_log)

        # Each edit changes a schedule that is due half a period away from the edit.
        names = sorted(due)
        edit_times = [window[0] + args.duration * (k + 1) / (args.edits + 1) for k in range(args.edits)]
        edits = []
        sleep_until(window[0], beat, beat_log)
        busy_at_start, beat_at_start = machine_busy_seconds(), process_usage(beat.pid).get("cpu_seconds", 0)
        for moment in edit_times:
            sleep_until(moment, beat, beat_log)
            victim = min(names, key=lambda n, m=moment: abs(((due[n] - m) % args.period) - args.period / 2))
            edits.append(edit_schedule(victim))
            say(f"edited {victim} at +{moment - window[0]:.1f} s in {edits[-1]['save_seconds'] * 1000:.0f} ms")
        stop_at = window[1] + args.tail
        sleep_until(stop_at, beat, beat_log)
        stopped_at = time.time()
        usage = process_usage(beat.pid)
        busy = machine_busy_seconds() - busy_at_start
        beat_cpu = usage.get("cpu_seconds", 0) - beat_at_start
        contention = {
            "seconds": round(stopped_at - window[0], 1),
            "machine_busy_cpu_seconds": round(busy, 1),
            "beat_cpu_seconds": round(beat_cpu, 1),
            # Everything else: this script, Valkey, and whatever else runs on the machine.
            "other_cpu_seconds": round(busy - beat_cpu, 1),
            "other_share_of_machine": round((busy - beat_cpu) / (stopped_at - window[0]) / (os.cpu_count() or 1), 3),
            **quiet,
        }
        stop(beat, timeout=120 if args.profile else 10)  # beat writes its state on the way out; not measured
        sends = read_sends(client)
        results = analyse(args, due, sends, window, stopped_at, edits)
        report = {
            "label": label,
            "scheduler": args.scheduler,
            "scheduler_source": source,
            "schedules": args.schedules,
            "crontab_share": args.crontab_share,
            "other_connection_held": args.hold_connection,
            "period_seconds": args.period,
            "lead_seconds": args.lead,
            "seconds_from_beat_start_to_window": window[0] - beat_started,
            "beat": usage,
            "cpu_during_window": contention,
            "load_average_before": load_before,
            "load_average_after": os.getloadavg(),
            "versions": versions(client),
            "started": datetime.fromtimestamp(created_at, UTC).isoformat(),
            "results": results,
            "beat_log": str(beat_log) if args.keep else None,
        }
        if args.profile:
            report["profile"] = profile_top(beat_log.with_suffix(".prof"))
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2) + "\n")
        say(summary(report))
        say(f"results written to {out}")
        return 0
    finally:
        if holder is not None:
            holder.close()
        stop(beat, timeout=10)
        stop(redis_process)
        if not args.keep:
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
