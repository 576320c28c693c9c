"""The broker and the queue browser through the API: same reads, same permissions, same audit as the pages."""

import time

import pytest
from django.core.cache import cache

from taskcenter.models import AuditEntry, DeadLetter, Run
from taskcenter.services.launch import run_launch
from tests.api_support import assert_problem
from tests.conftest import broker_down

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _fresh():
    cache.clear()


def launch(**options) -> Run:
    return run_launch(**{"task_name": "examples.add", "args": [1, 2], "queue": "low", "priority": "NORMAL", **options})


def messages_of(client, queue: str = "low") -> list[dict]:
    body = client.get(f"/api/v1/queues/{queue}/messages/").json()
    return [message for level in body["priorities"] for message in level["messages"]]


def test_broker_figures_and_warnings(viewer, private_broker):
    launch(priority="HIGH")
    private_broker.config_set("maxmemory-policy", "volatile-lru")
    try:
        body = viewer.get("/api/v1/broker/").json()
    finally:
        private_broker.config_set("maxmemory-policy", "noeviction")
    assert body["version"] and body["aof_enabled"] is True and body["memory_policy"] == "volatile-lru"
    low = next(q for q in body["queues"] if q["name"] == "low")
    assert low["total"] == 1 and low["by_priority"]["HIGH"] == 1
    assert any("volatile-lru" in warning for warning in body["warnings"])


def test_messages_of_a_queue_with_masked_secrets(viewer, private_broker):
    launch(task_name="examples.connect", args=[], kwargs={"host": "h", "user": "u", "password": "hunter2"})
    response = viewer.get("/api/v1/queues/low/messages/", {"limit": 10})
    assert response.status_code == 200
    assert "hunter2" not in response.content.decode()
    normal = next(p for p in response.json()["priorities"] if p["priority"] == "NORMAL")
    assert normal["length"] == 1 and normal["messages"][0]["task_name"] == "examples.connect"
    assert normal["messages"][0]["has_run"] is True and normal["messages"][0]["readable"] is True


def test_delete_and_dead_letter_one_message(admin, private_broker):
    first, second = launch(), launch()
    messages = messages_of(admin)
    response = admin.post("/api/v1/queues/low/messages/delete/", {"id": messages[0]["id"]}, format="json")
    assert response.status_code == 200 and response.json()["detail"]["task_id"] == first.task_id
    response = admin.post("/api/v1/queues/low/messages/deadletter/", {"id": messages[1]["id"]}, format="json")
    assert response.status_code == 200
    assert DeadLetter.objects.get().task_id == second.task_id
    assert set(Run.objects.values_list("recorded_state", flat=True)) == {"REVOKED"}
    assert AuditEntry.objects.filter(action="purge", outcome="ok").count() == 2
    gone = admin.post("/api/v1/queues/low/messages/delete/", {"id": messages[0]["id"]}, format="json")
    assert_problem(gone, 409)


def test_a_viewer_may_read_but_not_delete_or_dead_letter(viewer, private_broker):
    launch()
    message = messages_of(viewer)[0]
    for action in ("delete", "deadletter"):
        assert_problem(viewer.post(f"/api/v1/queues/low/messages/{action}/", {"id": message["id"]}, format="json"), 403)
    assert Run.objects.get().cancelled_at is None


def test_bad_input_is_a_4xx_problem(admin, private_broker):
    assert_problem(admin.get("/api/v1/queues/low/messages/", {"offset": "-1"}), 400)
    assert_problem(admin.get("/api/v1/queues/nope/messages/"), 404)
    assert_problem(admin.post("/api/v1/queues/low/messages/delete/", {"id": "x"}, format="json"), 400)
    assert_problem(admin.post("/api/v1/queues/low/messages/delete/", {}, format="json"), 400)


def test_broker_down_is_a_503_within_two_seconds(viewer, redis_server, tmp_path):
    with broker_down(tmp_path, redis_server, frozen=True):
        for url in ("/api/v1/broker/", "/api/v1/queues/low/messages/"):
            began = time.monotonic()
            assert_problem(viewer.get(url), 503)
            assert time.monotonic() - began < 2.0


def _envelope(headers: dict, body: str) -> bytes:
    import base64
    import json

    encoded = base64.b64encode(body.encode()).decode()
    return json.dumps(
        {"body": encoded, "content-type": "application/json", "content-encoding": "utf-8", "headers": headers,
         "properties": {"body_encoding": "base64", "delivery_tag": "t"}}
    ).encode()  # fmt: skip


@pytest.mark.parametrize(
    "raw",
    [
        _envelope({"task": "x", "id": "i", "taskcenter_sent_at": float("-inf")}, "[[], {}, {}]"),
        _envelope({"task": "x", "id": "i", "taskcenter_sent_at": float("nan")}, "[[NaN], {}, {}]"),
        _envelope({"task": "x", "id": "i"}, "[" * 5000 + "]" * 5000),
        _envelope({"task": "x", "id": "i", "eta": {"not": "a date"}}, '[[1], {"a": [1e308]}, {}]'),
        _envelope({"task": "examples.connect", "id": "i"}, '[["h", "u", "hunter2"], {}, {}]'),
    ],
    ids=["minus-infinity-sent", "nan", "deep", "odd-eta", "foreign-secret"],
)
def test_odd_messages_from_other_clients_never_break_the_page_or_the_api(admin, staff_client, private_broker, raw):
    private_broker.lpush("low", raw)
    response = admin.get("/api/v1/queues/low/messages/")
    assert response.status_code == 200 and b"hunter2" not in response.content
    assert staff_client.get("/queues/low/messages/").status_code == 200
    message = messages_of(admin)[0]
    assert (
        admin.post("/api/v1/queues/low/messages/deadletter/", {"id": message["id"]}, format="json").status_code == 200
    )
