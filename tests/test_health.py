"""/healthz, /readyz and ``manage.py taskcenter_status``.

Most readiness tests use a Redis server of this module's own, holding the state a
healthy system writes (a worker online in the monitor's hash, a beat that
ticked), so nothing else changes it; one end-to-end test runs a real worker,
monitor and beat.
"""

import json
import signal
import subprocess
import sys
import time

import pytest
from django.core.management import call_command

from tests.conftest import LOG_DIR, ROOT, _die_with_parent, broker_down, process_env, wait_for

CHECKS = {"database", "broker", "workers", "beat"}


@pytest.fixture
def broker(private_broker):
    return private_broker


def set_worker(client, *, age: float = 0.5) -> None:
    state = {"hostname": "w1@test", "online": True, "last_heartbeat": time.time() - age, "freq": 2}
    client.hset("taskcenter:monitor:workers", "w1@test", json.dumps(state))


def set_beat(client, *, age: float = 1) -> None:
    client.set("taskcenter:beat:leader", "beathost:7:abc")
    tick = {"id": "beathost:7:abc", "hostname": "beathost", "pid": 7, "time": time.time() - age, "max_interval": 5}
    client.set("taskcenter:beat:last_tick", json.dumps(tick))


@pytest.fixture
def ready(broker):
    set_worker(broker)
    set_beat(broker)
    return broker


def readyz(client):
    started = time.monotonic()
    response = client.get("/readyz")
    return response, response.json(), time.monotonic() - started


# --- /healthz -----------------------------------------------------------------------------


def test_healthz_answers_without_login_or_database(client, django_assert_num_queries):
    # No django_db mark: any database access here would raise.
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"] or "max-age=0" in response["Cache-Control"]


def test_healthz_is_read_only(client):
    assert client.post("/healthz").status_code == 405


# --- /readyz ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_readyz_is_200_when_every_check_passes(client, ready):
    response, body, _ = readyz(client)
    assert response.status_code == 200, body
    assert body["status"] == "ok"
    assert set(body["checks"]) == CHECKS
    for name, check in body["checks"].items():
        assert check["ok"] is True and check["message"], name
    assert "w1@test" in body["checks"]["workers"]["message"]
    assert "beathost" in body["checks"]["beat"]["message"]


@pytest.mark.django_db
def test_readyz_is_503_without_a_worker_online(client, broker):
    set_beat(broker)
    set_worker(broker, age=300)
    response, body, _ = readyz(client)
    assert response.status_code == 503
    assert body["status"] == "fail"
    assert {name for name, check in body["checks"].items() if not check["ok"]} == {"workers"}


@pytest.mark.django_db
def test_readyz_is_503_when_beat_stopped_ticking(client, broker, settings):
    settings.TASKCENTER_ALERT_BEAT_STALE = 60
    set_worker(broker)
    set_beat(broker, age=120)
    response, body, _ = readyz(client)
    assert response.status_code == 503
    assert not body["checks"]["beat"]["ok"] and "120" in body["checks"]["beat"]["message"]
    broker.delete("taskcenter:beat:leader", "taskcenter:beat:last_tick")
    response, body, _ = readyz(client)
    assert response.status_code == 503 and not body["checks"]["beat"]["ok"]


@pytest.mark.django_db
def test_readyz_is_503_fast_when_the_broker_is_down(client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        response, body, elapsed = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False and "does not answer" in body["checks"]["broker"]["message"]
    assert body["checks"]["workers"]["ok"] is False
    assert body["checks"]["beat"]["ok"] is False
    assert elapsed < 3


@pytest.mark.django_db
def test_readyz_never_hangs_on_a_frozen_broker(client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server, frozen=True):
        response, body, elapsed = readyz(client)
    assert response.status_code == 503
    assert body["checks"]["database"]["ok"] is True
    assert body["checks"]["broker"]["ok"] is False
    assert elapsed < 3.5, f"readyz took {elapsed:.1f}s"


@pytest.mark.django_db
def test_readyz_needs_no_login_and_is_read_only(client, ready):
    assert client.get("/readyz").status_code == 200
    assert client.post("/readyz").status_code == 405


# --- manage.py taskcenter_status ----------------------------------------------------------


@pytest.mark.django_db
def test_status_command_exits_0_when_ready(ready, capsys):
    call_command("taskcenter_status")  # returns normally: exit status 0
    out = capsys.readouterr().out
    for name in CHECKS:
        assert name in out
    assert "Ready." in out and "FAIL" not in out


@pytest.mark.django_db
def test_status_command_exits_1_when_not_ready_and_prints_json(broker, capsys):
    set_beat(broker)
    with pytest.raises(SystemExit) as exited:
        call_command("taskcenter_status", "--json")
    assert exited.value.code == 1
    body = json.loads(capsys.readouterr().out)
    assert body["status"] == "fail"
    assert body["checks"]["workers"] == {"ok": False, "message": "No worker is online."}
    assert body["checks"]["database"]["ok"] and body["checks"]["broker"]["ok"] and body["checks"]["beat"]["ok"]


@pytest.mark.django_db
def test_status_command_exits_1_when_the_broker_is_down(tmp_path, redis_server, capsys):
    with broker_down(tmp_path, redis_server), pytest.raises(SystemExit) as exited:
        call_command("taskcenter_status")
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "broker" in out and "Not ready" in out


# --- End to end: a real worker, monitor and beat --------------------------------------------


@pytest.fixture
def monitor(django_db_blocker, redis_server, celery_worker):
    """A real ``manage.py taskcenter_monitor`` on the session's Redis and test database."""
    with django_db_blocker.unblock():
        env = process_env(redis_server)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    with open(LOG_DIR / "monitor-health.log", "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "manage.py", "taskcenter_monitor", "--flush-interval", "0.5", "--sample-interval", "2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )
    yield process
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.mark.e2e
@pytest.mark.django_db(transaction=True)
def test_readyz_with_a_real_worker_monitor_and_beat(client, celery_worker, monitor, celery_beat):
    celery_beat(max_interval=1)

    def answer():
        response = client.get("/readyz")
        return response if response.status_code == 200 else None

    response = wait_for(answer, timeout=60, interval=0.5, message="readyz to answer 200")
    body = response.json()
    assert celery_worker.hostname in body["checks"]["workers"]["message"]
    assert all(check["ok"] for check in body["checks"].values())

    call_command("taskcenter_status")  # exit status 0
