#!/usr/bin/env python
"""Benchmark: response times of the dashboard, /metrics, the history, Failures and Dead letters at scale.

Usage: .venv/bin/python bench/pages_at_scale.py [--runs 1000000] [--deadletters 1000000] [--groups 2000]
       [--requests 20]
       .venv/bin/python bench/pages_at_scale.py --history 10000,1000000 [--rounds 5] [--requests 4]

The second form fills one database per size and times every History query (each state,
each filter, combinations, deep pages, search by task id) on each, alternating the sizes
round by round so that load on the machine falls on both alike; it prints p50, p95 and
the ratio of the largest size's p95 to the smallest's.

Builds its own state folder (SQLite database, Valkey server), fills it with
``--runs`` runs and results (the failed ones in ``--groups`` failure groups, the
first group holding most of them), ``--deadletters`` dead letters over 100 days,
plus a day of per-minute figures, then times requests through Django's test
client (no network), with the number of SQL statements each takes. Prints a
table; docs/benchmarks.md keeps the figures. A benchmark, not a test: nothing
here asserts a time.
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

from taskcenter.search_text import SQL_FUNCTION, searchable  # noqa: E402  (after the path is set)

TASKS = [("examples.add", "high"), ("examples.fail", "default"), ("examples.process_items", "low")]
EXCEPTIONS = [f"Error{n:02d}" for n in range(30)]
OTHER_TASKS = [f"app.task_{n:02d}" for n in range(20)]


WORKERS = [f"worker{n}@bench" for n in range(4)]
SOURCES = ["code", "web", "api", "cli", "admin"]
LAUNCHERS = ["alice", "bob", "carol"]


class Database:
    """The few DB-API calls ``fill`` makes, on SQLite (a file) or PostgreSQL (a URL); ``?`` placeholders."""

    def __init__(self, target):
        self.postgresql = isinstance(target, str)
        if self.postgresql:
            import psycopg

            self.con = psycopg.connect(target)
        else:
            self.con = sqlite3.connect(target)
            # The search index's triggers call this function (see taskcenter/search_text.py).
            self.con.create_function(SQL_FUNCTION, 1, searchable, deterministic=True)
            self.con.execute("PRAGMA journal_mode=WAL")
            self.con.execute("PRAGMA synchronous=OFF")

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self.postgresql else sql

    def execute(self, sql: str, params=()):
        cursor = self.con.cursor()
        cursor.execute(self._sql(sql), params)
        return cursor

    def executemany(self, sql: str, rows) -> None:
        self.con.cursor().executemany(self._sql(sql), rows)

    def commit(self) -> None:
        self.con.commit()

    def analyze(self) -> None:
        if self.postgresql:
            self.con.commit()
            self.con.autocommit = True
            self.con.execute("VACUUM ANALYZE")
        else:
            self.con.execute("ANALYZE")

    def close(self) -> None:
        self.con.close()


def users_insert(con: Database) -> list[int]:
    """The users who launch runs (ids, for ``launched_by``)."""
    joined = datetime.now(UTC).isoformat(sep=" ")
    con.executemany(
        "INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, "
        "date_joined) VALUES ('!', ?, ?, '', '', '', ?, ?, ?)",
        [(False, name, True, True, joined) for name in LAUNCHERS],
    )
    return [row[0] for row in con.execute("SELECT id FROM auth_user ORDER BY id").fetchall()]


def group_fingerprint(n: int) -> str:
    return f"{n:040x}"


def fill(db_path: Path | str, runs: int, groups: int) -> None:
    """Insert runs, results, failure groups and a day of minute figures straight into the database (fast).

    ``db_path``: a SQLite file, or a PostgreSQL URL.

    The runs' own state is written as the monitor writes it; each failed run is in a
    failure group: 60 % in the first group (its page pages through tens of thousands
    of runs), the rest spread over the others.
    """
    now = datetime.now(UTC)
    tasks = TASKS
    # Out of 200: PENDING and RECEIVED have no result row (as in production), the others have one.
    states = ["SUCCESS"] * 176 + ["FAILURE"] * 16 + ["STARTED"] * 2 + ["REVOKED"] * 2 + ["RETRY"] * 2 + [
        "RECEIVED", "PENDING"]  # fmt: skip
    con = Database(db_path)
    users = users_insert(con)
    batch = 50_000
    group_counts = [0] * groups
    for start in range(0, runs, batch):
        run_rows, result_rows = [], []
        for i in range(start, min(start + batch, runs)):
            task_id = str(uuid.UUID(int=random.getrandbits(128)))
            name, queue = tasks[i % 3]
            created = (now - timedelta(seconds=(runs - i) * 2)).isoformat(sep=" ")
            status = random.choice(states)
            fingerprint = None
            if status == "FAILURE" and groups:
                group = 0 if random.random() < 0.6 else random.randrange(groups)
                group_counts[group] += 1
                fingerprint = group_fingerprint(group)
            worker = "" if status in ("PENDING", "RECEIVED") else WORKERS[i % len(WORKERS)]
            source, launcher = SOURCES[i % len(SOURCES)], users[i % len(users)] if i % 4 else None
            schedule = f"schedule-{i % 10}" if i % 10 == 0 else ""
            if schedule:
                source, launcher = "schedule", None
            args = f'[{i % 97}, "order-{i}"]'  # "order" is in every run, "order-<i>" in one (the text search)
            run_rows.append((task_id, name, queue, "NORMAL", args, "{}", source, schedule, created, "", "", "",
                             "[]", "", status, worker, fingerprint, launcher))  # fmt: skip
            if status not in ("PENDING", "RECEIVED"):
                result_rows.append((task_id, name, status, worker, "application/json", "utf-8", "3", created,
                                    created, created))  # fmt: skip
        con.executemany(
            "INSERT INTO taskcenter_run (task_id, task_name, queue, priority, args, kwargs, source, "
            "periodic_task_name, created_at, dedup_key, cancel_reason, secrets, attempts, outcome, state, worker, "
            "failure_fingerprint, launched_by_id) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
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
    con.executemany(
        "INSERT INTO taskcenter_failuregroup (fingerprint, task_name, exception_type, location, count, first_seen, "
        "last_seen, sample_task_id, sample_exception, sample_traceback, status) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
        [
            (group_fingerprint(n), tasks[n % 3][0], EXCEPTIONS[n % len(EXCEPTIONS)], f"app/mod{n}.py:f{n}",
             group_counts[n], (now - timedelta(days=30, minutes=n)).isoformat(sep=" "),
             (now - timedelta(minutes=n)).isoformat(sep=" "), "", f"{EXCEPTIONS[n % len(EXCEPTIONS)]}('boom')",
             "Traceback (most recent call last):\n" * 5, ["open", "open", "open", "resolved", "ignored"][n % 5])
            for n in range(groups)
        ],
    )  # fmt: skip
    con.commit()
    con.analyze()
    con.close()


def fill_deadletters(db_path: Path, letters: int) -> None:
    """Insert dead letters over 100 days, oldest first: mostly resolved after a week, mostly open before."""
    now = datetime.now(UTC)
    names = [name for name, _ in TASKS] + OTHER_TASKS
    reasons = ["failed"] * 85 + ["rejected"] * 10 + ["expired"] * 5
    con = sqlite3.connect(db_path)
    con.execute("PRAGMA synchronous=OFF")
    batch = 50_000
    span = timedelta(days=100).total_seconds()
    for start in range(0, letters, batch):
        rows = []
        for i in range(start, min(start + batch, letters)):
            age = span * (letters - i) / letters
            created = (now - timedelta(seconds=age)).isoformat(sep=" ")
            resolved = random.random() < (0.95 if age > 7 * 86400 else 0.2)
            resolution = random.choice(["replayed", "discarded"]) if resolved else ""
            exception = EXCEPTIONS[min(int(random.expovariate(0.3)), len(EXCEPTIONS) - 1)]
            rows.append((str(uuid.UUID(int=random.getrandbits(128))), names[min(int(random.expovariate(0.4)),
                         len(names) - 1)], "default", random.choice(reasons), exception, "boom",
                         "Traceback (most recent call last):\n  ...\n" * 20, "[1, 2]", "{}", "", "worker@bench",
                         created, resolution, "", created if resolved else None))  # fmt: skip
        con.executemany(
            "INSERT INTO taskcenter_deadletter (task_id, task_name, queue, reason, exception_type, message, "
            "traceback, args, kwargs, secrets, worker, created_at, resolution, replayed_as, resolved_at) "
            "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
            rows,
        )
        con.commit()
    con.execute(
        "INSERT INTO taskcenter_deadlettertotal (reason, task_name, total) "
        "SELECT reason, task_name, COUNT(*) FROM taskcenter_deadletter GROUP BY reason, task_name"
    )  # as the migration starts the counters, and each recorded letter adds to them
    con.commit()
    con.execute("ANALYZE")
    con.close()


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def timed(client, url: str, n: int, *, data=None, **headers) -> tuple[float, float, int, int]:
    """Median and longest time of ``n`` requests (a POST with ``data``), the last status and its SQL statements."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    times, status, statements = [], 0, 0
    for _ in range(n):
        began = time.perf_counter()
        with CaptureQueriesContext(connection) as queries:
            response = client.post(url, data, **headers) if data is not None else client.get(url, **headers)
        times.append(time.perf_counter() - began)
        status, statements = response.status_code, len(queries)
    return statistics.median(times), max(times), status, statements


def percentile(times: list[float], q: float) -> float:
    ordered = sorted(times)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def history_queries(size: int) -> list[tuple[str, str]]:
    """(label, URL) of every History query timed, for the database now connected (its cursors and ids)."""
    from django.utils import timezone

    from taskcenter.models import RUN_STATES, Run

    def at(hours: float) -> str:
        return timezone.localtime(timezone.now() - timedelta(hours=hours)).strftime("%Y-%m-%dT%H:%M")

    def half_way(**filters) -> int:
        runs = Run.objects.filter(**filters).order_by("-created_at", "-id")
        return runs.values_list("id", flat=True)[runs.count() // 2]  # measured once, outside the timings

    sample = Run.objects.order_by("id").values_list("task_result_id", flat=True)[size // 3]
    queries = [("newest", "/runs/")]
    queries += [(f"state={state}", f"/runs/?state={state}") for state in RUN_STATES]
    queries += [
        ("task", "/runs/?task_name=examples.add"),
        ("queue", "/runs/?queue=low"),
        ("worker", f"/runs/?worker={WORKERS[2]}"),
        ("schedule", "/runs/?schedule=schedule-0"),
        ("launched by", f"/runs/?launched_by={LAUNCHERS[1]}"),
        ("source", "/runs/?source=api"),
        ("unknown task (no match)", "/runs/?task_name=nope"),
        ("last hour", f"/runs/?created_from={at(1)}"),
        ("an hour, 4 h ago", f"/runs/?created_from={at(5)}&created_to={at(4)}"),
        ("task + state", "/runs/?task_name=examples.fail&state=FAILURE"),
        ("task + rare state", "/runs/?task_name=examples.add&state=RETRY"),
        ("queue + state", "/runs/?queue=low&state=STARTED"),
        ("worker + state", f"/runs/?worker={WORKERS[1]}&state=FAILURE"),
        ("launched by + task", f"/runs/?launched_by={LAUNCHERS[0]}&task_name=examples.add"),
        ("launched by + task, no match", f"/runs/?launched_by={LAUNCHERS[0]}&task_name=examples.fail"),
        ("task + queue, no match", "/runs/?task_name=examples.add&queue=low"),
        ("source, no match", "/runs/?source=external"),
        ("state + last hour", f"/runs/?state=FAILURE&created_from={at(1)}"),
        ("task + state + an hour 4 h ago", f"/runs/?task_name=examples.fail&state=FAILURE&created_from={at(5)}"
         f"&created_to={at(4)}"),
        ("deep page (half way)", f"/runs/?before={half_way()}"),
        ("deep page, state=SUCCESS", f"/runs/?state=SUCCESS&before={half_way(recorded_state='SUCCESS')}"),
        ("deep page, task", f"/runs/?task_name=examples.add&before={half_way(task_name='examples.add')}"),
        ("newer page (after)", f"/runs/?after={half_way()}"),
        ("search by task id", f"/runs/?task_id={sample}"),
        ("run detail", f"/runs/{sample}/"),
        ("API, state + worker", f"/api/v1/runs/?state=FAILURE&worker={WORKERS[1]}"),
        ("API, count PENDING", "/api/v1/runs/count/?state=PENDING"),
        ("task, part in any case", "/runs/?task_name=ADD"),
        ("task, part of 3 names", "/runs/?task_name=examples"),
        ("task, part of 3 names, deep", f"/runs/?task_name=examples&before={half_way()}"),
        ("queue, part + state", "/runs/?queue=LO&state=FAILURE"),
        ("task id prefix", f"/runs/?task_id={sample[:6]}"),
        ("text, one run", f"/runs/?text=order-{size // 2}"),
        ("text, every run (capped)", "/runs/?text=order"),
        ("text + state + task", "/runs/?text=order&state=FAILURE&task_name=fail"),
        ("text, no match", "/runs/?text=nothing-matches"),
        ("sort by run time", "/runs/?sort=runtime"),
        ("sort by run time, task + state", "/runs/?sort=runtime&task_name=examples.add&state=SUCCESS"),
        ("API, search + task", f"/api/v1/runs/?search=order-{size // 3}&task=add"),
        ("API, count of a search", "/api/v1/runs/count/?search=order"),
        ("dashboard", "/dashboard/?refresh=0"),
    ]  # fmt: skip
    return queries


#: Run by a child process: SQLite's text index brought up to date (docs/architecture.md, "Search").
INDEX_NOTED_RUNS = (
    "import os, django; os.environ.setdefault('DJANGO_SETTINGS_MODULE', 'config.settings'); django.setup(); "
    "from taskcenter.search_index import search_index_catch_up; "
    "search_index_catch_up(limit=10**9)"
)


def postgresql_database(url_template: str, name: str) -> str:
    """A new, empty PostgreSQL database ``name``; its URL (``url_template`` has ``{name}`` for the database)."""
    import psycopg

    with psycopg.connect(url_template.format(name="postgres"), autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    return url_template.format(name=name)


def history_compare(options) -> None:
    """Time every History query on databases of each size, alternating rounds, and print p50/p95 and the ratios.

    Each figure is a whole request through Django's test client (rendering included).
    """
    sizes = [int(n) for n in options.history.split(",")]
    base_env = dict(os.environ, DEBUG="true", TASKCENTER_METRICS_TOKEN="bench", ALLOWED_HOSTS="testserver")
    base_env.pop("DATABASE_URL", None)
    base_env.pop("REDIS_URL", None)
    states, databases = [], []
    try:
        for size in sizes:
            if options.keep:  # a fixed folder, filled once and used again by the next run with --keep
                state = Path(tempfile.gettempdir()) / f"tc-bench-history-{size}{'-pg' if options.postgresql else ''}"
                filled = (state / "filled").exists()
                state.mkdir(exist_ok=True)
            else:
                state, filled = Path(tempfile.mkdtemp(prefix=f"tc-bench-history-{size}-")), False
            states.append(state)
            env = dict(base_env, TASKCENTER_STATE_DIR=str(state))
            target = state / "taskcenter.sqlite3"
            if options.postgresql:
                name = f"tc_bench_history_{size}"
                url = options.postgresql
                target = url.format(name=name) if filled else postgresql_database(url, name)
                env["DATABASE_URL"] = target
            databases.append(target)
            if filled:
                say(f"{size:,} runs: kept from a previous run ({state})")
                continue
            subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
            began = time.perf_counter()
            fill(target, size, max(size // 500, 1))
            say(f"filled {size:,} runs in {time.perf_counter() - began:.0f} s")
            if not options.postgresql:  # index the runs the triggers noted, as the monitor does every second
                began = time.perf_counter()
                subprocess.run([sys.executable, "-c", INDEX_NOTED_RUNS], cwd=ROOT, env=env, check=True)
                say(f"indexed them for text search in {time.perf_counter() - began:.0f} s")
            (state / "filled").touch()
        first = states[0]
        (first / "redis").mkdir(exist_ok=True)
        from taskcenter.embedded_redis import server_command

        socket = first / "redis" / "redis.sock"
        redis = subprocess.Popen(server_command(first / "redis", socket), stdout=subprocess.DEVNULL)
        try:
            while not (first / "redis" / "redis.sock").exists():
                time.sleep(0.05)
            os.environ.update(base_env, TASKCENTER_STATE_DIR=str(first))
            if options.postgresql:
                os.environ["DATABASE_URL"] = str(databases[0])
            os.environ["DJANGO_SETTINGS_MODULE"] = "config.settings"
            import django

            django.setup()
            from django.contrib.auth import get_user_model
            from django.db import connection
            from django.test import Client
            from django.test.utils import CaptureQueriesContext

            def use(k: int) -> None:
                connection.close()
                target = databases[k]
                connection.settings_dict["NAME"] = f"tc_bench_history_{sizes[k]}" if options.postgresql else str(target)

            clients, queries = [], []
            for k, size in enumerate(sizes):
                use(k)
                user = get_user_model().objects.filter(username="bench").first()
                user = user or get_user_model().objects.create_superuser(username="bench", password="bench-pass-1")
                client = Client()
                client.force_login(user)
                clients.append(client)
                queries.append(history_queries(size))
            times = [[[] for _ in queries[0]] for _ in sizes]
            cpu = [[[] for _ in queries[0]] for _ in sizes]
            statements = [[0 for _ in queries[0]] for _ in sizes]
            for _ in range(options.rounds):
                for k, client in enumerate(clients):
                    use(k)
                    for q, (_, url) in enumerate(queries[k]):
                        for _ in range(options.requests):
                            connection.queries_log.clear()
                            began, began_cpu = time.perf_counter(), time.process_time()
                            with CaptureQueriesContext(connection) as captured:
                                response = client.get(url)
                            times[k][q].append(time.perf_counter() - began)
                            cpu[k][q].append(time.process_time() - began_cpu)
                            assert response.status_code in (200, 302), (url, response.status_code)
                            statements[k][q] = len(captured)
            engine = "PostgreSQL" if options.postgresql else "SQLite"
            small, large = f"{sizes[0]:,}", f"{sizes[-1]:,}"
            say(
                f"\n{engine}, {options.rounds * options.requests} requests per query and size, alternating sizes."
                " Elapsed time, and the CPU time of this process (SQLite's work included; not the PostgreSQL"
                " server's), which other load on the machine does not inflate."
                f"\n\n| History query | elapsed p50, {small} / {large} runs | elapsed p95 | ratio |"
                f" CPU p50, {small} / {large} runs | CPU p95 | ratio | statements |\n|---|---|---|---|---|---|---|---|"
            )
            for q, (label, _) in enumerate(queries[0]):

                def pair(series, quantile, q=q):
                    return [percentile(series[k][q], quantile) * 1000 for k in (0, len(sizes) - 1)]

                p50, p95, c50, c95 = pair(times, 0.5), pair(times, 0.95), pair(cpu, 0.5), pair(cpu, 0.95)
                say(
                    f"| {label} | {p50[0]:.1f} / {p50[1]:.1f} ms | {p95[0]:.1f} / {p95[1]:.1f} ms |"
                    f" {p95[1] / p95[0]:.2f}x | {c50[0]:.1f} / {c50[1]:.1f} ms | {c95[0]:.1f} / {c95[1]:.1f} ms |"
                    f" {c95[1] / c95[0]:.2f}x | {statements[-1][q]} |"
                )
            if options.plans:
                say(f"\nQuery plans of the run list at {large} runs:\n")
                use(len(sizes) - 1)
                for label, url in queries[-1]:
                    connection.queries_log.clear()
                    with CaptureQueriesContext(connection) as captured:
                        clients[-1].get(url)
                    for sql in [c["sql"] for c in captured.captured_queries]:
                        if 'FROM "taskcenter_run"' in sql and "LIMIT" in sql:
                            explain = "EXPLAIN QUERY PLAN " if connection.vendor == "sqlite" else "EXPLAIN (COSTS OFF) "
                            with connection.cursor() as cursor:
                                cursor.execute(explain + sql)
                                plan = " / ".join(str(row[-1]).strip() for row in cursor.fetchall())
                            say(f"- {label}: {plan}")
        finally:
            redis.terminate()
            redis.wait()
    finally:
        for state in states:
            if not options.keep:
                shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--deadletters", type=int, default=1_000_000)
    parser.add_argument("--groups", type=int, default=2_000)
    parser.add_argument("--requests", type=int, default=20)
    parser.add_argument(
        "--history", default="", help="Sizes to compare History at, e.g. 10000,1000000 (only History is timed)"
    )
    parser.add_argument("--rounds", type=int, default=5, help="With --history: rounds, alternating the sizes")
    parser.add_argument("--keep", action="store_true", help="With --history: keep the filled databases, reuse them")
    parser.add_argument("--plans", action="store_true", help="With --history: print the run list's query plans")
    parser.add_argument(
        "--postgresql",
        default="",
        help="With --history: a PostgreSQL URL with {name} for the database, e.g. postgres://postgres@/{name}?host=/tmp",
    )
    options = parser.parse_args()
    if options.history:
        history_compare(options)
        return

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
    fill(state / "taskcenter.sqlite3", options.runs, options.groups)
    say(f"filled {options.runs:,} runs in {options.groups:,} failure groups in {time.perf_counter() - began:.0f} s")
    began = time.perf_counter()
    fill_deadletters(state / "taskcenter.sqlite3", options.deadletters)
    say(f"filled {options.deadletters:,} dead letters in {time.perf_counter() - began:.0f} s")

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
        from taskcenter.models import DeadLetter, Run

        big, small = group_fingerprint(0), group_fingerprint(max(options.groups - 1, 0))
        middle = (
            Run.objects.filter(failure_fingerprint=big)
            .order_by("-id")
            .values_list("id", flat=True)[max(Run.objects.filter(failure_fingerprint=big).count() // 2, 0)]
        )  # a cursor half way down the big group (measured once, outside the timings)
        deep = DeadLetter.objects.order_by("id").values_list("id", flat=True)[options.deadletters // 2]
        day = (datetime.now(UTC) - timedelta(days=30)).strftime("%Y-%m-%dT%H:%M")
        next_day = (datetime.now(UTC) - timedelta(days=29)).strftime("%Y-%m-%dT%H:%M")
        everything = (datetime.now(UTC) - timedelta(days=200)).strftime("%Y-%m-%dT%H:%M")
        long_ago = (datetime.now(UTC) - timedelta(days=90)).strftime("%Y-%m-%dT%H:%M")
        in_window = (
            DeadLetter.objects.filter(created_at__lt=datetime.now(UTC) - timedelta(days=31))
            .order_by("-created_at", "-id")
            .values_list("id", flat=True)[49]
        )  # the last letter of the first page of that window
        pages = [
            ("dashboard", "/dashboard/?refresh=0", {}),
            ("/metrics", "/metrics", {"HTTP_AUTHORIZATION": "Bearer bench"}),
            ("history, newest", "/runs/", {}),
            ("history, state=FAILURE", "/runs/?state=FAILURE", {}),
            ("history, task + state", "/runs/?task_name=examples.add&state=SUCCESS", {}),
            ("schedules", "/schedules/", {}),
            ("failures", "/failures/", {}),
            ("failures, task", "/failures/?task_name=examples.fail", {}),
            ("failures, exception type", "/failures/?exception_type=Error07", {}),
            ("failures, status ignored", "/failures/?status=ignored", {}),
            ("failures, last seen in a day", f"/failures/?seen_from={day}&seen_to={next_day}", {}),
            ("failure group (largest), newest", f"/failures/{big}/", {}),
            ("failure group (largest), half way", f"/failures/{big}/?before={middle}", {}),
            ("failure group (smallest)", f"/failures/{small}/", {}),
            ("dead letters (open)", "/deadletters/", {}),
            ("dead letters, all statuses", "/deadletters/?status=", {}),
            ("dead letters, all, half way", f"/deadletters/?status=&before={deep}", {}),
            ("dead letters, task", "/deadletters/?task_name=examples.fail", {}),
            ("dead letters, rare task", "/deadletters/?task_name=app.task_19", {}),
            ("dead letters, reason expired", "/deadletters/?reason=expired", {}),
            ("dead letters, exception type", "/deadletters/?exception_type=Error05", {}),
            ("dead letters, rare exception", "/deadletters/?exception_type=Error29", {}),
            ("dead letters, replayed", "/deadletters/?status=replayed", {}),
            ("dead letters, one day", f"/deadletters/?status=&created_from={day}&created_to={next_day}", {}),
            ("dead letters, 200 days", f"/deadletters/?status=&created_from={everything}", {}),
            ("dead letters, 60 days ending 30 days ago",
             f"/deadletters/?status=&created_from={long_ago}&created_to={day}", {}),
            ("dead letters, 60 days, 2nd page", f"/deadletters/?status=&created_from={long_ago}&created_to={day}"
             f"&before={in_window}", {}),
            ("dead letters, 200 days, rare task", f"/deadletters/?created_from={everything}&task_name=app.task_19",
             {}),
            ("dead letters, task + reason + exc.",
             "/deadletters/?task_name=app.task_19&reason=expired&exception_type=Error29", {}),
            ("no match (unknown task)", "/deadletters/?task_name=nope&status=", {}),
        ]  # fmt: skip
        counts = [
            ("count: retry a group (largest)", f"/failures/{big}/retry/", {}),
            ("count: dead-letter a group (largest)", f"/failures/{big}/deadletter/", {}),
            ("count: replay all open letters", "/deadletters/actions/", {"action": "replay", "scope": "filter",
                                                                        "status": "open"}),
            ("count: discard all of a task", "/deadletters/actions/", {"action": "discard", "scope": "filter",
                                                                      "task_name": "examples.fail", "status": ""}),
        ]  # fmt: skip
        say(
            f"\n| page ({options.runs:,} runs, {options.deadletters:,} dead letters) | median | max | status | SQL |"
            "\n|---|---|---|---|---|"
        )
        for label, url, headers in pages:
            median, worst, status, statements = timed(client, url, options.requests, **headers)
            say(f"| {label} | {median * 1000:.0f} ms | {worst * 1000:.0f} ms | {status} | {statements} |")
        for label, url, data in counts:
            median, worst, status, statements = timed(client, url, options.requests, data=data)
            say(f"| {label} | {median * 1000:.0f} ms | {worst * 1000:.0f} ms | {status} | {statements} |")
    finally:
        redis.terminate()
        redis.wait()
        shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
