"""What the app skips at every publish, and that it still declares and configures what it must (issue 12, part 4).

- The app's producers (``taskcenter.amqp.DeclaredOnceProducer``) do not copy, bind and
  look up a queue or exchange their connection already declared; after a lost connection
  the next publish declares again, as kombu's own producer does.
- The settings Celery reads at every publish are copied into the app's configuration
  (``taskcenter.amqp.pin_publish_settings``); a change made on ``app.conf`` still wins.
- A launch sends its message and its task-sent event in one round trip
  (``taskcenter.broker.publishing_together``, kombu's publish batch): nothing is sent when
  the block fails, and a broker that stops answering fails the launch within 2 s.

Checked on a real Redis server, with the project's own app.
"""

import base64
import json
import signal
import time
import uuid

import pytest
import redis
from kombu import messaging

from config.celery import app as project_app
from taskcenter.amqp import PUBLISH_SETTINGS, DeclaredOnceProducer
from taskcenter.broker import BROKER_ERRORS, publishing_together
from taskcenter.models import AuditEntry, Run
from taskcenter.services.launch import BrokerUnavailable, run_launch

pytestmark = pytest.mark.django_db


@pytest.fixture
def declarations(monkeypatch):
    """The entities kombu's ``maybe_declare`` is asked about while the test runs (it still does the work)."""
    asked = []
    real = messaging.maybe_declare

    def counting(entity, *args, **kwargs):
        asked.append(entity.name)
        return real(entity, *args, **kwargs)

    monkeypatch.setattr(messaging, "maybe_declare", counting)
    return asked


def publish(n: int = 1, queue: str = "default") -> None:
    task = project_app.tasks["examples.add"]
    for i in range(n):
        task.apply_async(args=[i, 1], task_id=str(uuid.uuid4()), queue=queue)


def queued(client, queue: str) -> int:
    return sum(client.llen(key) for key in client.keys(f"{queue}*") if client.type(key) == b"list")


def test_the_apps_producers_skip_a_queue_and_exchange_their_connection_declared(
    private_broker, declarations, celery_conf
):
    celery_conf(task_send_sent_event=True)
    with project_app.producer_or_acquire() as producer:
        assert isinstance(producer, DeclaredOnceProducer)
    publish(1)
    assert set(declarations) >= {"default", "celeryev"}  # the first publish declares the queue and event exchange
    declarations.clear()
    publish(10)
    assert declarations == []
    publish(1, queue="high")  # a queue not declared yet on this connection is declared
    assert declarations == ["high"]
    assert queued(private_broker, "default") == 11 and queued(private_broker, "high") == 1


def test_after_a_publish_fails_on_a_stopped_broker_the_next_one_declares_again(
    private_broker, private_redis, declarations
):
    publish(2)
    assert declarations.count("default") <= 1  # once per connection, as kombu's own producer
    private_redis.stop()
    with pytest.raises(BROKER_ERRORS):
        publish(1)  # kombu drops the connection, and with it what it declared there
    private_redis.start()
    declarations.clear()
    publish(2)
    assert declarations.count("default") == 1  # asked again once, then skipped again
    assert queued(private_broker, "default") >= 2


def test_the_settings_read_at_every_publish_are_copied_once_and_later_changes_still_win(private_broker, monkeypatch):
    conf = project_app.conf
    assert {name: conf.changes[name] for name in PUBLISH_SETTINGS} == {name: conf[name] for name in PUBLISH_SETTINGS}
    monkeypatch.setitem(conf, "task_always_eager", True)  # the bare spelling, as tests and shells set it
    result = project_app.tasks["examples.add"].apply_async(args=[2, 3])
    assert result.get(timeout=5) == 5  # ran here, eagerly: no message
    assert queued(private_broker, "default") == 0
    monkeypatch.setitem(conf, "CELERY_TASK_ALWAYS_EAGER", False)  # the namespaced spelling wins over the copy
    publish(1)
    assert queued(private_broker, "default") == 1


@pytest.fixture
def redis_commands(monkeypatch):
    """What this process sends to Redis while the test runs: ``[("PIPELINE", [names]) or (name, None)]``."""
    sent = []
    execute_command = redis.Redis.execute_command
    execute = redis.client.Pipeline.execute

    def command(self, *args, **options):
        if not isinstance(self, redis.client.Pipeline):
            sent.append((str(args[0]).upper(), None))
        return execute_command(self, *args, **options)

    def pipeline(self, *args, **kwargs):
        sent.append(("PIPELINE", [str(c[0][0]).upper() for c in self.command_stack]))
        return execute(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "execute_command", command)
    monkeypatch.setattr(redis.client.Pipeline, "execute", pipeline)
    return sent


def test_a_launch_sends_its_message_and_task_sent_event_in_one_round_trip(private_broker, celery_conf, redis_commands):
    celery_conf(task_send_sent_event=True)
    publish(1)  # the connection's first publish declares the queue and the event exchange
    events = private_broker.pubsub()
    events.psubscribe("/0.celeryev/*")
    events.get_message(timeout=1)  # the subscription's confirmation
    redis_commands.clear()
    run = run_launch(task_name="examples.add", args=[2, 3], queue="default")
    assert redis_commands == [("PIPELINE", ["LPUSH", "PUBLISH"])]  # the message first, then its event
    event = events.get_message(timeout=2)
    assert event is not None and event["channel"].endswith(b"task.sent")
    sent = json.loads(base64.b64decode(json.loads(event["data"])["body"]))
    assert (sent["type"], sent["uuid"], sent["queue"]) == ("task-sent", run.task_id, "default")
    assert queued(private_broker, "default") == 2
    events.close()


def test_nothing_published_in_a_failing_block_is_sent(private_broker):
    publish(1)
    task = project_app.tasks["examples.add"]
    with pytest.raises(RuntimeError), publishing_together() as producer:
        task.apply_async(args=[1, 1], queue="low", producer=producer)
        raise RuntimeError("the caller failed after the publish was buffered")
    assert queued(private_broker, "low") == 0
    with publishing_together() as producer:
        task.apply_async(args=[1, 1], queue="low", producer=producer)
    assert queued(private_broker, "low") == 1


def test_a_broker_that_stops_answering_fails_the_launch_within_two_seconds_and_keeps_nothing(
    private_broker, private_redis
):
    publish(1)  # a kept connection, with the queue declared: only the batch's round trip meets the frozen server
    private_redis.process.send_signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable):
            run_launch(task_name="examples.add", args=[4, 5], queue="default")
        assert time.monotonic() - started < 2
    finally:
        private_redis.process.send_signal(signal.SIGCONT)
    assert not Run.objects.filter(args=[4, 5]).exists()
    refusal = AuditEntry.objects.filter(outcome=AuditEntry.Outcome.ERROR).latest("id")
    assert "Redis" in refusal.message or "broker" in refusal.message.lower()


def test_a_launch_right_after_the_broker_restarted_goes_through(private_broker, private_redis):
    """The batch's pipeline takes a pooled connection that the restart closed: redis-py connects again."""
    run_launch(task_name="examples.add", args=[1, 1], queue="default")
    private_redis.stop()
    private_redis.start()
    before = queued(private_broker, "default")  # what the server kept on disk
    run = run_launch(task_name="examples.add", args=[6, 7], queue="default")
    assert Run.objects.filter(task_result_id=run.task_id).exists()
    assert queued(private_broker, "default") == before + 1
