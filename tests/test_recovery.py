"""Recovery of lost task messages: the decisions (pure) and the give-back script on a real Redis."""

import json
import time

import pytest

from taskcenter.broker import broker_channel
from taskcenter.monitor.runs import RunEvent, run_apply_event
from taskcenter.recovery import (
    HolderTracker,
    Unacked,
    UnackedReader,
    alive_workers,
    lost_reason,
    orphans,
    unacked_restore,
)

NOW = 1_000_000.0


def entry(task_id="t1", *, queue="default", age=30.0, tag=None):
    return Unacked(tag=tag or f"tag-{task_id}", task_id=task_id, queue=queue, delivered_at=NOW - age)


def worker(hostname, *, heartbeat_age=1.0, online=True):
    return {"hostname": hostname, "online": online, "last_heartbeat": NOW - heartbeat_age}


def test_a_worker_is_alive_while_its_heartbeats_arrive_and_lost_after_the_silence_or_its_offline_event():
    workers = [worker("a"), worker("b", heartbeat_age=20), worker("c", online=False)]
    alive = alive_workers(workers, now=NOW, lost_seconds=15, watching_since=NOW - 100, stream_lost_at=None)
    assert alive == {"a"}


def test_right_after_the_event_stream_came_back_workers_heard_before_it_was_lost_still_count_as_alive():
    # The stream was down from NOW-30 to NOW-2: no heartbeat could be seen meanwhile.
    workers = [worker("a", heartbeat_age=31), worker("dead-long-before", heartbeat_age=60)]
    alive = alive_workers(workers, now=NOW, lost_seconds=15, watching_since=NOW - 2, stream_lost_at=NOW - 30)
    assert alive == {"a"}
    # Once the stream has been read for the whole silence, the usual rule applies again.
    later = alive_workers(workers, now=NOW, lost_seconds=15, watching_since=NOW - 16, stream_lost_at=NOW - 30)
    assert later == set()
    # While the stream is down, workers heard before it was lost must answer before anything is given back.
    down = alive_workers(workers, now=NOW, lost_seconds=15, watching_since=None, stream_lost_at=NOW - 30)
    assert down == {"a"}


def test_messages_no_worker_holds_are_orphans_once_old_enough():
    entries = [entry("held"), entry("lost"), entry("young", age=1), entry("other-queue", queue="celery")]
    found = orphans(
        entries, {"a": {"held"}}, alive={"a"}, queues={"default"}, now=NOW, min_age=5
    )  # fmt: skip
    assert [e.task_id for e in found] == ["lost"]


def test_while_an_alive_worker_has_not_answered_only_messages_of_workers_that_are_gone_are_orphans():
    # A slow worker that still sends heartbeats keeps its task, even if it did not answer in time.
    entries = [entry("t1"), entry("t2"), entry("t3")]
    holders = {"t1": "slow", "t2": "dead"}  # t3: holder unknown (events missed)
    found = orphans(entries, {"a": set()}, alive={"a", "slow"}, queues={"default"}, now=NOW, min_age=5, holders=holders)
    assert [e.task_id for e in found] == ["t2"]
    assert orphans([entry("t1")], None, alive=set(), queues={"default"}, now=NOW, min_age=5) == []


def test_a_dead_worker_held_task_is_an_orphan_when_the_alive_workers_answered():
    found = orphans([entry("t1")], {"b": {"t2"}}, alive={"b"}, queues={"default"}, now=NOW, min_age=5)
    assert [e.task_id for e in found] == ["t1"]
    assert lost_reason("dead@host", {"b"}) == "worker lost"
    assert lost_reason("b", {"b"}) == "broker lost"  # its worker lives but dropped it: a lost connection


def test_holders_follow_task_events_and_forget_finished_tasks():
    holders = HolderTracker(max_ids=2)
    holders.handle({"type": "task-received", "uuid": "t1", "hostname": "a"})
    holders.handle({"type": "task-started", "uuid": "t1", "hostname": "a"})
    holders.handle({"type": "task-received", "uuid": "t2", "hostname": "b"})
    holders.handle({"type": "task-succeeded", "uuid": "t2", "hostname": "b"})
    holders.handle({"type": "task-retried", "uuid": "t1", "hostname": "other"})  # not its holder: kept
    assert dict(holders.holders) == {"t1": "a"}
    for n in range(3):
        holders.handle({"type": "task-received", "uuid": f"n{n}", "hostname": "a"})
    assert len(holders.holders) == 2


def test_a_given_back_message_ends_the_open_attempt_with_the_reason():
    class Record:
        recorded_state = "STARTED"
        attempts = [{"worker": "a", "pid": 1, "started": "2026-01-01T00:00:00+00:00", "ended": None}]
        recorded_started_at = recorded_finished_at = None
        worker = outcome = ""

    record = Record()
    run_apply_event(record, RunEvent(kind="task-restored", timestamp=NOW, text="worker lost"))
    assert record.attempts[-1]["ended"] == "worker lost"
    assert record.recorded_state == "STARTED"  # it waits to run again; the next attempt moves it


@pytest.mark.django_db
def test_an_unacked_message_is_given_back_to_its_priority_list_marked_redelivered_once(private_broker):
    from celery import current_app

    current_app.send_task("examples.add", args=[1, 2], task_id="lost-1", queue="default")
    with broker_channel() as channel:
        lists = [key for key in private_broker.keys("default*") if private_broker.llen(key)]
        assert len(lists) == 1
        raw = private_broker.rpop(lists[0])
        # What kombu writes when a worker takes the message with late acknowledgement.
        private_broker.hset("unacked", "tag-1", json.dumps([json.loads(raw), "default", "default"]))
        private_broker.zadd("unacked_index", {"tag-1": time.time() - 60})

        read = UnackedReader().read(channel, older_than=time.time() - 5)
        assert [(e.tag, e.task_id, e.queue) for e in read] == [("tag-1", "lost-1", "default")]

        assert unacked_restore(channel, "tag-1") == "lost-1"
        assert unacked_restore(channel, "tag-1") is None  # already given back: nothing pushed twice
    assert not private_broker.hlen("unacked") and not private_broker.zcard("unacked_index")
    assert private_broker.llen(lists[0]) == 1
    restored = json.loads(private_broker.lindex(lists[0], 0))
    assert restored["headers"]["id"] == "lost-1"
    assert restored["headers"]["redelivered"] is True
    assert restored["properties"]["delivery_info"]["redelivered"] is True
