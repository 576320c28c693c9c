"""taskcenter.broker: errors, clients, the kept-open connection and its lock, and a frozen broker's cost.

The timing tests run in a fresh Python process each, so no connection made by an
earlier test is warm: what a user meets right after a web process starts.
"""

import json
import signal
import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest
from celery import Celery

from taskcenter import broker
from tests.conftest import ROOT, RedisServer, _die_with_parent, broker_down, process_env, use_broker

#: Every launch and page answers within this many seconds, whatever the broker does.
BUDGET = 2.0

# Run in a fresh process: launch once, or request each page as a logged-in superuser,
# and print the seconds each took as JSON. With WAIT_FOR_FREEZE it first launches
# once on a live broker (a warm connection) and waits for the parent to freeze it.
FRESH_PROCESS = textwrap.dedent(
    """
    import json, os, sys, time
    import django
    django.setup()
    from django.contrib.auth import get_user_model
    from django.test import Client
    from taskcenter.services.launch import BrokerUnavailable, run_launch

    def launch():
        began = time.monotonic()
        try:
            run_launch(task_name="examples.add", args=[1, 2])
        except BrokerUnavailable:
            return ["BrokerUnavailable", time.monotonic() - began]
        return ["sent", time.monotonic() - began]

    if os.environ.get("WAIT_FOR_FREEZE"):
        print(json.dumps({"warm": launch()}), flush=True)
        sys.stdin.readline()
    if os.environ.get("PAGES"):
        client = Client(HTTP_HOST="localhost")
        client.force_login(get_user_model().objects.get(username="frozen-admin"))
        # A page that never reads the broker first: the first request of a process imports
        # the views and compiles templates (a few hundred ms on a loaded machine), which is
        # not the broker's time. Every broker connection is still cold.
        client.get("/audit/")
        times = {}
        for url in os.environ["PAGES"].split(","):
            began = time.monotonic()
            status = (client.post(url, json.loads(os.environ["LAUNCH_FORM"])) if "launch" in url
                      else client.get(url)).status_code
            times[url] = [status, time.monotonic() - began]
        print(json.dumps(times), flush=True)
    else:
        print(json.dumps({"launch": launch()}), flush=True)
    """
)
LAUNCH_FORM = {"args": "[1, 2]", "kwargs": "{}", "queue": "high", "priority": "NORMAL", "countdown": ""}


@pytest.fixture
def frozen_redis(tmp_path):
    """A real Redis server to freeze with SIGSTOP; thawed and stopped after the test."""
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.process.send_signal(signal.SIGCONT)
    server.stop()


def fresh_process(server: RedisServer, **env) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", FRESH_PROCESS],
        cwd=ROOT,
        env=process_env(server, **env),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_die_with_parent,
    )


def result_of(process: subprocess.Popen) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err[-3000:]
    return json.loads(out.strip().splitlines()[-1])


@pytest.mark.django_db(transaction=True)
def test_a_launch_in_a_fresh_process_fails_within_2_s_on_a_frozen_broker(frozen_redis):
    frozen_redis.process.send_signal(signal.SIGSTOP)
    outcome, seconds = result_of(fresh_process(frozen_redis))["launch"]
    assert outcome == "BrokerUnavailable"
    assert seconds < BUDGET, f"the launch took {seconds:.2f} s"


@pytest.mark.django_db(transaction=True)
def test_a_launch_on_a_warm_connection_fails_within_2_s_when_the_broker_freezes(frozen_redis):
    # The 6 s case: the publish times out on the kept connection, then the retry reconnects.
    process = fresh_process(frozen_redis, WAIT_FOR_FREEZE="1")
    warm = json.loads(process.stdout.readline())
    assert warm["warm"][0] == "sent"
    frozen_redis.process.send_signal(signal.SIGSTOP)
    process.stdin.write("\n")
    process.stdin.flush()
    outcome, seconds = result_of(process)["launch"]
    assert outcome == "BrokerUnavailable"
    assert seconds < BUDGET, f"the launch took {seconds:.2f} s"


@pytest.mark.django_db(transaction=True)
def test_every_page_answers_within_2_s_in_a_fresh_process_on_a_frozen_broker(
    frozen_redis, redis_server, django_user_model
):
    from taskcenter.services.launch import run_launch

    django_user_model.objects.create_superuser(username="frozen-admin", password="pw-frozen-1")
    use_broker(frozen_redis.url)
    try:
        run = run_launch(task_name="examples.add", args=[1, 2])  # a run page to open
    finally:
        use_broker(redis_server.url)
    pages = [
        "/tasks/examples.add/launch/",
        "/queues/",
        "/workers/",
        "/dashboard/",
        "/alerts/",
        "/readyz",
        "/runs/",
        f"/runs/{run.task_id}/",
        "/schedules/",
        "/",
    ]
    frozen_redis.process.send_signal(signal.SIGSTOP)
    times = result_of(fresh_process(frozen_redis, PAGES=",".join(pages), LAUNCH_FORM=json.dumps(LAUNCH_FORM)))
    slow = {url: seconds for url, (_, seconds) in times.items() if seconds >= BUDGET}
    assert not slow, f"pages slower than {BUDGET} s with a frozen broker: {slow}"
    assert all(status < 500 or status == 503 for status, _ in times.values()), times


# --- The pieces ---------------------------------------------------------------------


def test_broker_errors_cover_kombu_redis_and_socket_failures_but_not_bad_messages():
    from kombu.exceptions import EncodeError, OperationalError
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    for error in (OperationalError("x"), RedisConnectionError(), RedisTimeoutError(), ConnectionRefusedError()):
        assert isinstance(error, broker.BROKER_ERRORS), error
    assert not isinstance(EncodeError("x"), broker.BROKER_ERRORS)


def test_a_worker_or_beat_gets_the_long_lived_timeouts_and_a_web_process_the_short_ones(settings):
    app = Celery("timeouts", set_as_current=False)
    app.config_from_object("django.conf:settings", namespace="CELERY")
    assert app.conf.broker_transport_options["socket_timeout"] == settings.BROKER_REQUEST_TIMEOUT < 1
    broker.use_long_lived_timeouts(sender=SimpleNamespace(app=app))
    options = app.conf.broker_transport_options
    assert options["socket_timeout"] == settings.BROKER_SOCKET_TIMEOUT >= 1
    assert options["health_check_interval"] > 0
    assert options["visibility_timeout"] == settings.BROKER_VISIBILITY_TIMEOUT  # the rest kept


def test_a_frozen_broker_costs_one_request_timeout_in_broker_client(tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        began = time.monotonic()
        with pytest.raises(broker.BROKER_ERRORS), broker.broker_client() as client:
            client.ping()
        elapsed = time.monotonic() - began
    assert elapsed < 2 * broker.request_timeout() + 0.3, elapsed


def test_the_broker_lock_has_one_holder_at_a_time(redis_server):
    key = "taskcenter:test:lock"
    first = broker.BrokerLock(key, identity="first", seconds=5)
    second = broker.BrokerLock(key, identity="second", seconds=5)
    try:
        assert first.hold() and first.hold()  # taken, then renewed
        assert not second.hold()
        assert second.holder() == "first"
        redis_server.client().set("taskcenter:test:tick", "1")
        assert not second.release(also_delete=("taskcenter:test:tick",))  # not its lock: nothing deleted
        assert redis_server.client().get("taskcenter:test:tick") == b"1"
        assert first.release(also_delete=("taskcenter:test:tick",))
        assert redis_server.client().get("taskcenter:test:tick") is None
        assert second.hold() and second.holder() == "second"
    finally:
        redis_server.client().delete(key)
        first.connection.disconnect()
        second.connection.disconnect()


def test_the_kept_open_connection_survives_a_redis_restart_and_reloads_its_scripts(tmp_path, redis_server):
    server = RedisServer(tmp_path)
    server.start()
    use_broker(server.url)
    lock = broker.BrokerLock("taskcenter:test:lock", identity="me", seconds=5)
    try:
        assert lock.hold()
        server.stop()
        with pytest.raises(broker.BROKER_ERRORS):
            lock.hold()
        assert not lock.connection.connected  # dropped, made again on the next call
        server.start()  # an empty server: the scripts must be loaded again
        assert lock.hold() and lock.holder() == "me"
    finally:
        lock.connection.disconnect()
        use_broker(redis_server.url)
        server.stop()


def test_the_beat_lock_runs_its_scripts_on_the_kept_open_connection(tmp_path, redis_server):
    from config.celery import app
    from taskcenter.selectors.beat import LAST_TICK_KEY, STANDBY_PREFIX
    from taskcenter.services.beat import ACQUIRED, RENEWED, STANDBY, BeatIdentity, BeatLock

    server = RedisServer(tmp_path)
    server.start()
    use_broker(server.url)
    first = BeatLock(app, BeatIdentity(id="one:1:a", hostname="one", pid=1))
    second = BeatLock(app, BeatIdentity(id="two:2:b", hostname="two", pid=2))
    try:
        assert isinstance(first.connection, broker.KeptOpenConnection)
        assert first.tick(max_interval=5) == (ACQUIRED, "one:1:a")
        assert first.tick(max_interval=5) == (RENEWED, "one:1:a")
        assert second.tick(max_interval=5) == (STANDBY, "one:1:a")
        assert json.loads(server.client().get(LAST_TICK_KEY))["id"] == "one:1:a"
        assert server.client().exists(STANDBY_PREFIX + "two:2:b")
        assert first.release() and not first.connection.connected
        assert not first.release()  # no connection: nothing to give up, nothing raised
        server.stop()
        with pytest.raises(broker.BROKER_ERRORS):
            second.tick(max_interval=5)
        assert not second.connection.connected  # dropped, made again on the next call
        server.start()  # an empty server: the scripts must be loaded again
        assert second.tick(max_interval=5) == (ACQUIRED, "two:2:b")
        assert second.release()
        assert not server.client().exists(STANDBY_PREFIX + "two:2:b")
    finally:
        first.disconnect()
        second.disconnect()
        use_broker(redis_server.url)
        server.stop()


@pytest.mark.e2e
def test_a_real_worker_runs_with_the_long_lived_timeouts(celery_worker, settings):
    from config.celery import app

    replies = app.control.inspect(destination=[celery_worker.hostname], timeout=5).conf(with_defaults=False)
    options = replies[celery_worker.hostname]["broker_transport_options"]
    assert options["socket_timeout"] == settings.BROKER_SOCKET_TIMEOUT
    assert options["health_check_interval"] > 0
    assert app.conf.broker_transport_options["socket_timeout"] == settings.BROKER_REQUEST_TIMEOUT  # this process
