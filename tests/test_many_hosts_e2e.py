"""Many hosts: nothing assumes one machine.

Against one Redis (this module's own) and one database (the test database), run what a
deployment of several hosts runs: two worker "hosts" with distinct host names and state
folders, one of them dedicated to the ``low`` queue; two web processes (real gunicorn on two
ports, API token over HTTP); two ``celery beat``; two monitors. Then check that each due run
of an interval schedule is sent once, the monitor counts each finished run once, a control
action sent through web 2 reaches the host it names and no other, both web processes list
both workers (API, and the Workers page for a user who logged in on web 1 only), a launch
through web 1 to the dedicated queue runs on the host that consumes it, and delayed runs
(held in the scheduled set, which every worker's pump watches) run once each. A second test:
with TASKCENTER_CACHE_URL the API rate limit counts across both web processes.

Every wait is generous: on a loaded 2-core machine eight Django processes start slowly.
"""

import http.cookiejar
import json
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request

import pytest
from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from django_celery_results.models import TaskResult
from prometheus_client.parser import text_string_to_metric_families

from taskcenter.models import AuditEntry, Run, TaskTotals
from taskcenter.selectors import monitoring
from taskcenter.selectors.beat import beat_status
from taskcenter.services.api_tokens import token_create
from tests.conftest import LOG_DIR, CeleryProcess, process_env, wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SCHEDULE = "many hosts: add every 2 s"
INTERVAL = 2
#: Seconds the two beats run side by side.
BEAT_WINDOW = 20
METRICS_TOKEN = "many-hosts-metrics"
MAIN, LOW = "main@alpha", "low@beta"
#: Runs launched with a countdown, held in the scheduled set until due.
DELAYED = 5


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Web:
    """A gunicorn process serving config.wsgi on a port of its own."""

    def __init__(self, name: str, env: dict):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.process = CeleryProcess(
            fresh_log(f"hosts-{name}"),
            ["config.wsgi:application", "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--timeout", "90"],
            env,
            program=("-m", "gunicorn"),
        )

    def request(self, path: str, *, token: str, body: dict | None = None, timeout: float = 30) -> tuple[int, dict]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.base + path, data=data, method="POST" if data else "GET")
        request.add_header("Authorization", f"Bearer {token}")
        if data:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (local test server)
                raw = response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            raw, status = error.read(), error.code
        text = raw.decode(errors="replace")
        return status, (json.loads(text) if text.startswith(("{", "[")) else {"text": text})

    def answers(self) -> bool:
        if self.process.process.poll() is not None:
            raise AssertionError(f"{self.base} exited early:\n{self.process.log()[-3000:]}")
        try:
            with urllib.request.urlopen(self.base + "/healthz", timeout=5) as response:  # noqa: S310
                return response.status == 200
        except OSError:
            return False


class Browser:
    """Cookies kept across requests, as a browser keeps them (for 127.0.0.1 whatever the port)."""

    def __init__(self):
        self.jar = http.cookiejar.CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(self.jar))

    def get(self, url: str) -> tuple[str, str]:
        """The page's final address (after redirects) and its text."""
        with self.opener.open(url, timeout=30) as response:
            return response.geturl(), response.read().decode(errors="replace")

    def log_in(self, base: str, username: str, password: str) -> None:
        _, page = self.get(base + "/login/")
        csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urllib.parse.urlencode({"username": username, "password": password, "csrfmiddlewaretoken": csrf})
        with self.opener.open(base + "/login/", data=form.encode(), timeout=30) as response:
            assert not response.geturl().endswith("/login/"), "the login was refused"


def sent_by(beat: CeleryProcess) -> int:
    return beat.log().count(f"Sending due task {SCHEDULE} ")


def metric(text: str, **labels) -> float:
    """The value of ``celery_tasks_total`` with these labels in a /metrics answer."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "celery_tasks_total" and sample.labels == labels:
                return sample.value
    raise AssertionError(f"celery_tasks_total{labels} is not in /metrics:\n{text[-3000:]}")


def fresh_log(name: str) -> str:
    """Empty the log file of a process about to start (the checks read it) and return its name."""
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    (LOG_DIR / f"{name}.log").write_bytes(b"")
    return name


def host_env(redis, tmp_path, folder: str, **extra) -> dict:
    """A process's environment: the shared Redis and database, a state folder of its own."""
    state = tmp_path / folder
    state.mkdir()
    return process_env(redis, TASKCENTER_STATE_DIR=str(state), **extra)


@pytest.fixture
def hosts(transactional_db, private_broker, private_redis, tmp_path):
    """Start every process but beat; yields them by name and stops them all (logs: test-output/logs/hosts-*)."""
    started: dict[str, CeleryProcess | Web] = {}
    try:
        for name in ("monitor-1", "monitor-2"):
            started[name] = CeleryProcess(
                fresh_log(f"hosts-{name}"),
                ["taskcenter_monitor", "--flush-interval=0.5", "--sample-interval=5"],
                host_env(private_redis, tmp_path, name),
                program=CeleryProcess.MANAGE,
            )
        for name, hostname, queues in (("alpha", MAIN, "high,default"), ("beta", LOW, "low")):
            started[name] = CeleryProcess(
                fresh_log(f"hosts-worker-{name}"),
                ["worker", "--loglevel=INFO", "--concurrency=1", f"--hostname={hostname}", "-Q", queues,
                 "--without-mingle", "--without-gossip"],
                host_env(private_redis, tmp_path, name),
            )  # fmt: skip
        for name in ("web-1", "web-2"):
            started[name] = Web(name, host_env(private_redis, tmp_path, name, TASKCENTER_METRICS_TOKEN=METRICS_TOKEN))
        yield started
    finally:
        for process in started.values():
            (process.process if isinstance(process, Web) else process).stop(timeout=30)


def start_beats(private_redis, tmp_path) -> list[CeleryProcess]:
    beats = []
    for name in ("beat-1", "beat-2"):
        env = host_env(private_redis, tmp_path, name, TASKCENTER_BEAT_LOCK_SECONDS="15")
        args = ["beat", "--loglevel=INFO", "--max-interval=1", "--pidfile="]
        beats.append(CeleryProcess(fresh_log(f"hosts-{name}"), args, env))
    return beats


def test_two_of_every_process_against_one_redis_and_one_database(hosts, private_redis, tmp_path):
    from celery import current_app

    user = get_user_model().objects.create_superuser(username="ops", password="pw-ops-1")
    _, token = token_create(user=user, name="many hosts", actor=user)
    web1, web2 = hosts["web-1"], hosts["web-2"]

    # --- Everything is up: workers answer, one monitor consumes and one waits, both webs serve.
    def both_workers_answer():
        replies = current_app.control.ping(destination=[MAIN, LOW], timeout=1)
        return {host for reply in replies for host in reply} == {MAIN, LOW}

    for name in ("alpha", "beta", "monitor-1", "monitor-2"):
        assert hosts[name].process.poll() is None, hosts[name].log()[-3000:]
    wait_for(both_workers_answer, timeout=120, interval=1, message="both workers to answer a ping")
    wait_for(web1.answers, timeout=120, interval=0.5, message="web 1 to serve")
    wait_for(web2.answers, timeout=120, interval=0.5, message="web 2 to serve")
    monitors = [hosts["monitor-1"], hosts["monitor-2"]]
    wait_for(
        lambda: (
            sum("consuming events" in m.log() for m in monitors) == 1
            and sum("standing by" in m.log() for m in monitors) == 1
        ),
        timeout=120,
        interval=0.5,
        message="one monitor to consume events and the other to stand by",
    )

    # --- Two beats, one interval schedule: each due run is sent once.
    every, _ = IntervalSchedule.objects.get_or_create(every=INTERVAL, period=IntervalSchedule.SECONDS)
    PeriodicTask.objects.create(name=SCHEDULE, interval=every, task="examples.add", kwargs='{"x": 1, "y": 2}')
    beats = start_beats(private_redis, tmp_path)
    try:
        wait_for(
            lambda: (s := beat_status())["healthy"] and len(s["standbys"]) == 1,
            timeout=90,
            interval=0.5,
            message="a leading beat and a standby",
        )
        assert {beat_status()["leader"]["pid"], *(s["pid"] for s in beat_status()["standbys"])} == {
            beat.process.pid for beat in beats
        }
        wait_for(
            lambda: Run.objects.filter(periodic_task_name=SCHEDULE).exists(), timeout=60, message="a scheduled run"
        )
        window_started = time.monotonic()

        # --- Meanwhile: both web processes list both workers.
        for web in (web1, web2):

            def lists_both(web=web):
                status, body = web.request("/api/v1/workers/", token=token)
                assert status == 200, body
                return {w["hostname"]: w for w in body["workers"]} if len(body["workers"]) == 2 else None

            workers = wait_for(lists_both, timeout=30, interval=1, message=f"{web.base} to list both workers")
            assert set(workers) == {MAIN, LOW}
            assert workers[MAIN]["queues"] == ["default", "high"] and workers[LOW]["queues"] == ["low"]
            assert workers[MAIN]["pool_processes"] == 1 and workers[LOW]["pool_processes"] == 1
        # ... and so do their Workers pages, for a user who logged in on web 1 only (sessions are shared).
        browser = Browser()
        browser.log_in(web1.base, "ops", "pw-ops-1")
        for web in (web1, web2):

            def page_lists_both(web=web):
                url, page = browser.get(web.base + "/workers/")
                assert url == web.base + "/workers/", f"{web.base} sent the user to {url}"
                return MAIN in page and LOW in page

            wait_for(page_lists_both, timeout=30, interval=1, message=f"the Workers page of {web.base}")
        # ... and so does the monitor's state, which the dashboard shows.
        wait_for(
            lambda: {w.hostname for w in monitoring.workers_state() if w.online} == {MAIN, LOW},
            timeout=30,
            message="the monitor to know both workers online",
        )

        # --- A pool action sent through web 2 reaches the host it names, and no other.
        status, body = web2.request(f"/api/v1/workers/{LOW}/pool/", token=token, body={"action": "grow", "n": 1})
        assert status == 200, body

        def pools():
            status, body = web1.request("/api/v1/workers/", token=token)
            return {w["hostname"]: w["pool_processes"] for w in body["workers"]} if status == 200 else {}

        # Both must answer (an inspect under load may miss one): LOW grew, MAIN did not.
        wait_for(lambda: pools() == {LOW: 2, MAIN: 1}, timeout=45, interval=1, message=f"{LOW} alone to grow")
        assert AuditEntry.objects.filter(action=AuditEntry.Action.POOL_GROW, target=LOW).count() == 1

        # --- A launch through web 1 to the dedicated queue runs on the host that consumes it.
        status, body = web1.request(
            "/api/v1/runs/", token=token, body={"task": "examples.add", "args": [20, 22], "queue": "low"}
        )
        assert status == 201, body
        task_id = body["task_id"]
        result = wait_for(
            lambda: TaskResult.objects.filter(task_id=task_id, status="SUCCESS").first(),
            timeout=60,
            message="the run on the low queue to succeed",
        )
        assert result.worker == LOW and json.loads(result.result) == 42
        status, body = web2.request(f"/api/v1/runs/{task_id}/", token=token)  # the other web sees it too
        assert status == 200 and body["state"] == "SUCCESS", body

        # --- Delayed runs launched through web 2 wait in the scheduled set; the pumps of both hosts
        # race for them when due, and each is published once (counted below: started once each).
        delayed = []
        for i in range(DELAYED):
            status, body = web2.request(
                "/api/v1/runs/", token=token, body={"task": "examples.add", "args": [i, i], "queue": "default",
                                                    "countdown": 3},
            )  # fmt: skip
            assert status == 201, body
            delayed.append(body["task_id"])

        time.sleep(max(0.0, BEAT_WINDOW - (time.monotonic() - window_started)))
    finally:
        # The standby first: stopped first, the leader would hand it the lock, and it would send the next run.
        leader = (beat_status().get("leader") or {}).get("pid")
        for beat in sorted(beats, key=lambda beat: beat.process.pid == leader):
            beat.stop(timeout=30)

    # Every send made one run, one beat sent them all, and no due time was sent twice or skipped.
    runs = list(Run.objects.filter(periodic_task_name=SCHEDULE).order_by("created_at"))
    sent = sorted(sent_by(beat) for beat in beats)
    assert sent[0] == 0 and sent[1] == len(runs), (sent, len(runs))
    assert len(runs) >= BEAT_WINDOW // INTERVAL - 2, len(runs)
    created = [run.created_at for run in runs]
    gaps = [(later - earlier).total_seconds() for earlier, later in zip(created, created[1:], strict=False)]
    assert all(gap >= INTERVAL / 2 for gap in gaps), gaps  # two beats sending the same due time would be ~0 s apart
    assert all(gap <= 3 * INTERVAL for gap in gaps), gaps  # none lost (generous: a loaded machine is late)
    assert {run.queue for run in runs} == {"high"}

    # Every scheduled run ran, on the host that consumes its queue.
    task_ids = [run.task_id for run in runs]
    wait_for(
        lambda: TaskResult.objects.filter(task_id__in=task_ids, status="SUCCESS").count() == len(runs),
        timeout=90,
        interval=0.5,
        message=f"the {len(runs)} scheduled runs to succeed",
    )
    assert set(TaskResult.objects.filter(task_id__in=task_ids).values_list("worker", flat=True)) == {MAIN}

    # --- The monitor counted each finished run once (the other one stood by), in its tables and in /metrics.
    def counted(queue: str, expected: int):
        totals = TaskTotals.objects.filter(task_name="examples.add", queue=queue).first()
        return totals and totals.succeeded >= expected and totals

    wait_for(lambda: counted("high", len(runs)), timeout=60, interval=0.5, message=f"{len(runs)} counted")
    wait_for(lambda: counted("low", 1), timeout=30, interval=0.5, message="the low run counted")
    wait_for(lambda: counted("default", DELAYED), timeout=60, interval=0.5, message="the delayed runs counted")
    time.sleep(2)  # a few more flushes: nothing may be counted twice
    high = TaskTotals.objects.get(task_name="examples.add", queue="high")
    low = TaskTotals.objects.get(task_name="examples.add", queue="low")
    assert (high.sent, high.started, high.succeeded, high.failed) == (len(runs),) * 3 + (0,)
    assert (low.sent, low.started, low.succeeded, low.failed) == (1, 1, 1, 0)
    later = TaskTotals.objects.get(task_name="examples.add", queue="default")
    assert (later.sent, later.started, later.succeeded, later.failed) == (DELAYED, DELAYED, DELAYED, 0)
    assert set(TaskResult.objects.filter(task_id__in=delayed).values_list("status", "worker")) == {("SUCCESS", MAIN)}
    for web in (web1, web2):
        request = urllib.request.Request(web.base + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            text = response.read().decode()
        assert metric(text, task="examples.add", queue="high", state="succeeded") == len(runs)
        assert metric(text, task="examples.add", queue="low", state="succeeded") == 1


def test_the_api_rate_limit_counts_across_web_processes_with_a_shared_cache(
    transactional_db, private_broker, private_redis, tmp_path
):
    """With TASKCENTER_CACHE_URL, two web processes allow a token its rate once, not once each."""
    user = get_user_model().objects.create_superuser(username="ops", password="pw-ops-1")
    _, token = token_create(user=user, name="rate", actor=user)
    cache = f"unix://{private_redis.socket}"
    webs = [
        Web(name, host_env(private_redis, tmp_path, name, TASKCENTER_API_RATE="4/min", TASKCENTER_CACHE_URL=cache))
        for name in ("rate-web-1", "rate-web-2")
    ]
    try:
        for web in webs:
            wait_for(web.answers, timeout=120, interval=0.5, message=f"{web.base} to serve")
        statuses = [webs[i % 2].request("/api/v1/catalogue/", token=token)[0] for i in range(6)]
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        for web in webs:
            web.process.stop(timeout=30)
