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
import threading
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
def test_readyz_is_200_when_every_check_passes(staff_client, ready):
    response, body, _ = readyz(staff_client)
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
def test_readyz_is_503_when_beat_stopped_ticking(staff_client, broker, settings):
    settings.TASKCENTER_ALERT_BEAT_STALE = 60
    set_worker(broker)
    set_beat(broker, age=120)
    response, body, _ = readyz(staff_client)
    assert response.status_code == 503
    assert not body["checks"]["beat"]["ok"] and "120" in body["checks"]["beat"]["message"]
    broker.delete("taskcenter:beat:leader", "taskcenter:beat:last_tick")
    response, body, _ = readyz(staff_client)
    assert response.status_code == 503 and not body["checks"]["beat"]["ok"]


@pytest.mark.django_db
def test_readyz_is_503_fast_when_the_broker_is_down(staff_client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server):
        response, body, elapsed = readyz(staff_client)
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
    assert elapsed < 2.0, f"readyz took {elapsed:.1f}s"


@pytest.mark.django_db
def test_readyz_needs_no_login_and_is_read_only(client, ready):
    assert client.get("/readyz").status_code == 200
    assert client.post("/readyz").status_code == 405


# --- /readyz details: staff users and the metrics token only ----------------------------------

#: A broker URL with a user, a password, a host, a port and a database, refused at once.
SECRET_BROKER_URL = "redis://readyzuser:readyzpass@127.0.0.1:9/7"
#: What a PostgreSQL driver error says about where the database is.
DB_ERROR = 'connection to server at "db.internal.example" (10.1.2.3), port 5499 failed: Connection refused'
LEAKS = ("readyzuser", "readyzpass", "127.0.0.1", ":9", "/7", "db.internal.example", "10.1.2.3", "5499")


@pytest.fixture
def details_hidden_setup(monkeypatch, redis_server, ready):
    """A broker URL full of details that refuses connections, a database that fails with its host and port."""
    from django.db import OperationalError, connections

    from tests.conftest import use_broker

    real_cursor = type(connections["default"]).cursor

    def failing_cursor(self, *args, **kwargs):
        # Only the readiness checks' threads see the failure: the request itself still loads its session.
        if threading.current_thread().name.startswith("taskcenter-ready"):
            raise OperationalError(DB_ERROR)
        return real_cursor(self, *args, **kwargs)

    use_broker(SECRET_BROKER_URL)
    monkeypatch.setattr(type(connections["default"]), "cursor", failing_cursor)  # every thread's connection
    yield
    monkeypatch.undo()
    use_broker(redis_server.url)


@pytest.mark.django_db
def test_readyz_shows_anonymous_callers_only_the_status_of_each_check(client, details_hidden_setup):
    response, body, elapsed = readyz(client)
    assert response.status_code == 503
    assert body == {"status": "fail", "checks": {name: {"ok": False} for name in CHECKS}}
    text = response.content.decode()
    for leak in LEAKS:
        assert leak not in text, leak
    assert elapsed < 2.0


@pytest.mark.django_db
def test_readyz_hides_worker_and_beat_hostnames_from_anonymous_callers(client, ready):
    response, body, _ = readyz(client)
    assert response.status_code == 200
    assert body == {"status": "ok", "checks": {name: {"ok": True} for name in CHECKS}}
    assert "w1@test" not in response.content.decode() and "beathost" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_hides_the_socket_path_of_a_stopped_broker_from_anonymous_callers(client, tmp_path, redis_server):
    with broker_down(tmp_path, redis_server) as server:
        response, body, _ = readyz(client)
    assert response.status_code == 503 and body["checks"]["broker"] == {"ok": False}
    assert str(server.socket) not in response.content.decode() and "redis" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_shows_details_to_staff(staff_client, details_hidden_setup):
    response, body, _ = readyz(staff_client)
    assert response.status_code == 503
    assert "readyzuser" in body["checks"]["broker"]["message"] and "127.0.0.1" in body["checks"]["broker"]["message"]
    assert "readyzpass" not in response.content.decode()  # kombu's as_uri() masks it
    assert "db.internal.example" in body["checks"]["database"]["message"]


@pytest.mark.django_db
def test_readyz_shows_details_for_the_metrics_token_only(client, settings, details_hidden_setup):
    settings.TASKCENTER_METRICS_TOKEN = "readyz-token-1"
    response = client.get("/readyz", HTTP_AUTHORIZATION="Bearer readyz-token-1")
    assert "db.internal.example" in response.json()["checks"]["database"]["message"]
    for wrong in ("Bearer readyz-token-2", "Bearer ", "Basic readyz-token-1", "readyz-token-1"):
        response = client.get("/readyz", HTTP_AUTHORIZATION=wrong)
        assert response.json()["checks"]["database"] == {"ok": False}, wrong


@pytest.mark.django_db
def test_readyz_hides_details_from_logged_in_users_who_are_not_staff(client, django_user_model, ready):
    client.force_login(django_user_model.objects.create_user(username="plain", password="pw-plain-1"))
    response, body, _ = readyz(client)
    assert body["checks"]["workers"] == {"ok": True}


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
def test_readyz_with_a_real_worker_monitor_and_beat(staff_client, celery_worker, monitor, celery_beat):
    celery_beat(max_interval=1)

    def answer():
        response = staff_client.get("/readyz")
        return response if response.status_code == 200 else None

    response = wait_for(answer, timeout=60, interval=0.5, message="readyz to answer 200")
    body = response.json()
    assert celery_worker.hostname in body["checks"]["workers"]["message"]
    assert all(check["ok"] for check in body["checks"].values())

    call_command("taskcenter_status")  # exit status 0
