"""Broker page and queue browser against a real Redis of this module's own (no worker consumes it)."""

import time

import pytest
from django.urls import reverse
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from taskcenter.models import AuditEntry, DeadLetter, Run
from taskcenter.services.launch import run_launch
from tests.conftest import broker_down

pytestmark = pytest.mark.django_db

QUEUE = "low"
SEPARATOR = "\x06\x16"


def launch(*, priority: str = "NORMAL", **kwargs) -> Run:
    options = {"task_name": "examples.add", "args": [1, 2], "queue": QUEUE, **kwargs}
    return run_launch(priority=priority, **options)


def browse(client, queue: str = QUEUE, **params):
    return client.get(reverse("taskcenter:queue_messages", args=[queue]), params)


def shown(response) -> list:
    return [m for level in response.context["page"].priorities for m in level.messages]


def act(client, action: str, message_id: str, queue: str = QUEUE):
    return client.post(reverse(f"taskcenter:queue_message_{action}", args=[queue]), {"message": message_id})


# --- Broker page -----------------------------------------------------------------


def test_broker_page_shows_version_memory_persistence_clients_and_queue_lists(staff_client, private_broker):
    launch(priority="LOW")
    launch(priority="URGENT")
    launch(priority="URGENT")
    private_broker.hset("unacked", "tag-1", b"[]")
    private_broker.zadd("unacked_index", {"tag-1": time.time()})
    response = staff_client.get(reverse("taskcenter:broker"))
    assert response.status_code == 200
    overview = response.context["overview"]
    assert overview.version and overview.version != "?"
    assert overview.memory_policy == "noeviction" and overview.aof_enabled is True
    assert overview.unacked == 1 and overview.unacked_index == 1
    assert overview.connected_clients >= 1
    low = next(q for q in overview.queues if q.name == QUEUE)
    assert dict(low.by_priority) == {"URGENT": 2, "HIGH": 0, "NORMAL": 0, "LOW": 1} and low.total == 3
    assert overview.warnings == []
    page = response.content.decode()
    assert "noeviction" in page and "Unacknowledged messages" in page and 'id="broker-warnings"' not in page
    assert reverse("taskcenter:queue_messages", args=[QUEUE]) in page
    assert reverse("taskcenter:broker") in staff_client.get(reverse("taskcenter:queue_list")).content.decode()


def test_broker_page_warns_when_persistence_is_off_or_keys_can_be_evicted(staff_client, private_broker):
    private_broker.config_set("appendonly", "no")
    private_broker.config_set("maxmemory-policy", "allkeys-lru")
    try:
        response = staff_client.get(reverse("taskcenter:broker"))
    finally:
        private_broker.config_set("appendonly", "yes")
        private_broker.config_set("maxmemory-policy", "noeviction")
    assert response.status_code == 200
    warnings = " ".join(response.context["overview"].warnings)
    assert "Persistence is off" in warnings and "allkeys-lru can evict" in warnings
    page = response.content.decode()
    assert 'id="broker-warnings"' in page and "allkeys-lru" in page


def test_scheduled_set_size_is_shown(staff_client, private_broker):
    launch(countdown=3600)
    overview = staff_client.get(reverse("taskcenter:broker")).context["overview"]
    assert overview.scheduled == 1


@pytest.mark.parametrize("frozen", [False, True], ids=["stopped", "frozen"])
def test_broker_down_gives_a_clear_message_within_two_seconds(staff_client, redis_server, tmp_path, frozen):
    with broker_down(tmp_path, redis_server, frozen=frozen):
        for url in (reverse("taskcenter:broker"), reverse("taskcenter:queue_messages", args=[QUEUE])):
            began = time.monotonic()
            response = staff_client.get(url)
            assert time.monotonic() - began < 2.0, url
            assert response.status_code == 503, url
            assert "is not reachable" in response.content.decode(), url
        began = time.monotonic()
        response = act(staff_client, "delete", "6.0." + "0" * 32)
        assert time.monotonic() - began < 2.0 and response.status_code == 503


# --- Queue browser ---------------------------------------------------------------


def test_queue_browser_lists_messages_per_priority_with_masked_secrets_and_age(staff_client, private_broker):
    secret = launch(task_name="examples.connect", args=[], kwargs={"host": "h", "user": "u", "password": "hunter2"})
    urgent = launch(priority="URGENT")
    response = browse(staff_client)
    assert response.status_code == 200
    page = response.content.decode()
    assert "hunter2" not in page and "********" in page
    by_id = {m.task_id: m for m in shown(response)}
    assert by_id[urgent.task_id].priority == "URGENT" and by_id[secret.task_id].priority == "NORMAL"
    assert by_id[secret.task_id].age is not None and by_id[secret.task_id].age < 60
    assert reverse("taskcenter:run_detail", args=[urgent.task_id]) in page
    assert reverse("taskcenter:scheduled_list") in page


def test_queue_browser_pages_with_an_offset_and_reads_only_one_page(staff_client, private_broker):
    runs = [launch() for _ in range(53)]
    first = shown(browse(staff_client))
    assert [m.task_id for m in first] == [r.task_id for r in runs[:50]]  # oldest first
    response = browse(staff_client, offset=50)
    assert [m.task_id for m in shown(response)] == [r.task_id for r in runs[50:]]
    assert response.context["page"].next_offset is None and response.context["page"].previous_offset == 0


def test_delete_one_of_identical_looking_messages_deletes_exactly_that_one(staff_client, private_broker):
    runs = [launch() for _ in range(3)]
    target = shown(browse(staff_client))[1]
    assert target.task_id == runs[1].task_id
    response = act(staff_client, "delete", target.id)
    assert response.status_code == 302, response.content.decode()[:2000]
    left = [m.task_id for m in shown(browse(staff_client))]
    assert left == [runs[0].task_id, runs[2].task_id]
    deleted = Run.objects.get(pk=runs[1].pk)
    assert deleted.state == "REVOKED" and deleted.cancelled_at and "deleted from queue low" in deleted.cancel_reason
    assert Run.objects.get(pk=runs[0].pk).cancelled_at is None
    entry = AuditEntry.objects.get(action="purge", outcome="ok")
    assert entry.detail["task_id"] == runs[1].task_id and entry.actor == staff_client.user
    # The same id again: the message is gone, nothing else is removed.
    assert act(staff_client, "delete", target.id).status_code == 409
    assert len(shown(browse(staff_client))) == 2


def test_a_message_taken_by_a_consumer_meanwhile_is_not_replaced_by_another(staff_client, private_broker):
    runs = [launch() for _ in range(2)]
    oldest = shown(browse(staff_client))[0]
    private_broker.rpop(f"{QUEUE}{SEPARATOR}6")  # a worker takes the oldest message
    assert act(staff_client, "delete", oldest.id).status_code == 409
    assert [m.task_id for m in shown(browse(staff_client))] == [runs[1].task_id]


def test_move_to_dead_letters_keeps_the_message_as_a_replayable_letter(staff_client, private_broker):
    run = launch(task_name="examples.connect", args=[], kwargs={"host": "h", "user": "u", "password": "hunter2"})
    message = shown(browse(staff_client))[0]
    response = act(staff_client, "deadletter", message.id)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert shown(browse(staff_client)) == []
    letter = DeadLetter.objects.get(task_id=run.task_id)
    assert letter.queue == QUEUE and letter.task_name == "examples.connect" and letter.resolution == ""
    assert letter.kwargs["password"] == "********" and "Moved to dead letters" in letter.message
    assert Run.objects.get(pk=run.pk).state == "REVOKED"
    assert AuditEntry.objects.get(action="purge", outcome="ok").detail["dead_letter"] == letter.pk


@pytest.mark.parametrize("garbage", [b"not json at all \xff", b'{"body": "x"}', b"[1, 2]", b'{"headers": {"task": 1}}'])
def test_an_unreadable_message_is_shown_with_its_size_and_can_be_deleted(staff_client, private_broker, garbage):
    launch()
    private_broker.lpush(QUEUE + SEPARATOR + "6", garbage, garbage)  # two identical payloads
    response = browse(staff_client)
    assert response.status_code == 200
    unreadable = [m for m in shown(response) if not m.readable]
    assert len(unreadable) == 2 and unreadable[0].size == len(garbage)
    assert "Unreadable" in response.content.decode()
    assert act(staff_client, "delete", unreadable[0].id).status_code == 302
    assert private_broker.lrange(QUEUE + SEPARATOR + "6", 0, -1).count(garbage) == 1
    assert act(staff_client, "deadletter", unreadable[1].id).status_code == 302
    assert private_broker.lrange(QUEUE + SEPARATOR + "6", 0, -1).count(garbage) == 0
    assert "unreadable" in DeadLetter.objects.get().message


def test_a_message_id_that_is_not_one_is_a_400(staff_client, private_broker):
    for bad in ("", "x", "5.0." + "0" * 32, "6.-1." + "0" * 32, "6.0.zz"):
        assert act(staff_client, "delete", bad).status_code == 400, bad


def test_an_unknown_queue_is_a_404(staff_client, private_broker):
    assert browse(staff_client, "nope").status_code == 404
    assert act(staff_client, "delete", "6.0." + "0" * 32, queue="nope").status_code == 404


def test_a_viewer_sees_the_pages_but_may_not_delete_or_dead_letter(viewer_client, private_broker):
    launch()
    response = browse(viewer_client)
    assert response.status_code == 200 and "Move to dead letters" not in response.content.decode()
    message = shown(response)[0]
    assert viewer_client.get(reverse("taskcenter:broker")).status_code == 200
    for action in ("delete", "deadletter"):
        assert act(viewer_client, action, message.id).status_code == 403
    assert len(shown(browse(viewer_client))) == 1
    assert not AuditEntry.objects.filter(action="purge").exists()


def test_anonymous_users_are_sent_to_log_in(client, private_broker):
    for url in (reverse("taskcenter:broker"), reverse("taskcenter:queue_messages", args=[QUEUE])):
        response = client.get(url)
        assert response.status_code == 302 and "login" in response["Location"]
    for action in ("delete", "deadletter"):
        assert act(client, action, "6.0." + "0" * 32).status_code == 302


FUZZ = settings(
    max_examples=25,
    deadline=None,
    database=None,
    phases=[Phase.explicit, Phase.generate],
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
HOSTILE = st.one_of(
    st.text(max_size=60),
    st.sampled_from(["-1", "9" * 40, "1e9", "nan", "\x00", "6.0." + "0" * 32, "0.99999999999." + "a" * 32, "low"]),
)


@FUZZ
@given(queue=HOSTILE.filter(lambda q: q and "/" not in q), offset=HOSTILE, message_id=HOSTILE)
def test_hostile_queue_offset_and_message_ids_never_give_a_server_error(
    staff_client, private_broker, queue, offset, message_id
):
    from urllib.parse import quote

    base = f"/queues/{quote(queue, safe='')}/messages/"
    assert staff_client.get(base, {"offset": offset}).status_code < 500
    for action in ("delete", "deadletter"):
        response = staff_client.post(f"{base}{action}/", {"message": message_id, "offset": offset})
        assert response.status_code < 500, (queue, offset, message_id)
