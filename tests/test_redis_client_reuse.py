"""kombu channels reuse one redis-py client per connection pool (issue 12, parts 3 and 4).

kombu built a new ``redis.Redis`` for each LPUSH of a publish, each task-sent event, each
acknowledgement and unacked-index write. The app's connections
(``taskcenter.broker.ReusingConnection``, the pooled ones included) keep one per pool in
every process, and a worker patches kombu's class (``taskcenter.worker.reuse_redis_clients``).
Checked on a real Redis server: the same client serves every call, messages still travel
and are acknowledged, a new pool gets a new client, and another Celery app in the process
keeps kombu's own behaviour.
"""

import uuid

import pytest
import redis
from celery import Celery
from kombu import Connection, Exchange, Producer, Queue
from kombu.transport import redis as kombu_redis

from config.celery import app as project_app
from taskcenter.broker import ReusingConnection
from taskcenter.worker import reuse_redis_clients


@pytest.fixture
def connection(private_redis):
    with ReusingConnection(private_redis.url) as connection:
        yield connection


@pytest.fixture
def channel(connection):
    return connection.default_channel


def test_a_channel_builds_its_redis_client_once_not_per_command(channel):
    first = channel._create_client()
    assert channel._create_client() is first
    assert channel._create_client(asynchronous=True) is channel._create_client(asynchronous=True)
    assert channel._create_client(asynchronous=True) is not first  # the async pool has its own


def test_messages_are_delivered_and_acknowledged_through_the_reused_client(connection, channel):
    queue = Queue("reuse-check", Exchange("reuse-check", type="direct"), routing_key="reuse-check")
    producer_channel = connection.channel()
    queue(channel).declare()
    producer = Producer(producer_channel)
    for i in range(5):
        producer.publish({"n": i}, exchange=queue.exchange, routing_key="reuse-check", declare=[queue])
    received = []
    for _ in range(5):
        message = queue(channel).get(no_ack=False)
        received.append(message.payload["n"])
        message.ack()
    assert sorted(received) == list(range(5))
    client = channel._create_client()
    assert client.hlen(channel.unacked_key) == 0 and client.zcard(channel.unacked_index_key) == 0
    producer_channel.close()


def test_a_new_connection_pool_gets_a_new_client(channel):
    before = channel._create_client()
    channel._pool = None  # what kombu does when it drops its pools after a connection error
    after = channel._create_client()
    assert after is not before
    assert after.connection_pool is channel.pool
    assert after.ping()


def test_a_workers_patch_of_kombus_class_wraps_once(monkeypatch, private_redis):
    monkeypatch.setattr(kombu_redis.Channel, "_create_client", kombu_redis.Channel._create_client)
    reuse_redis_clients()
    installed = kombu_redis.Channel._create_client
    reuse_redis_clients()
    assert kombu_redis.Channel._create_client is installed
    with Connection(private_redis.url) as connection:  # kombu's own connection class
        channel = connection.default_channel
        assert channel._create_client() is channel._create_client()


@pytest.fixture
def counted_clients(monkeypatch):
    """How many ``redis.Redis`` clients are built while the test runs."""
    built = []
    init = redis.Redis.__init__

    def counting(self, *args, **kwargs):
        built.append(self)
        return init(self, *args, **kwargs)

    monkeypatch.setattr(redis.Redis, "__init__", counting)
    return built


@pytest.mark.django_db
def test_the_apps_publishes_build_no_client_per_message(private_broker, counted_clients, celery_conf):
    celery_conf(task_send_sent_event=True)
    assert project_app.amqp.Connection is ReusingConnection
    task = project_app.tasks["examples.add"]
    task.apply_async(args=[1, 2], queue="default")  # the pooled connection and its channel are made here
    before = len(counted_clients)
    for i in range(10):
        task.apply_async(args=[i, 2], task_id=str(uuid.uuid4()), queue="default")
    assert len(counted_clients) == before  # kombu alone: two per publish (the LPUSH and the task-sent event)
    queued = sum(
        private_broker.llen(key) for key in private_broker.keys("default*") if private_broker.type(key) == b"list"
    )
    assert queued == 11  # every message on the queue (one list per priority step)


def test_another_celery_app_in_the_process_keeps_kombus_channels(private_redis):
    if getattr(kombu_redis.Channel._create_client, "taskcenter_reused", False):
        pytest.skip("a worker's patch of kombu's class is installed in this process")
    stock = Celery("stock", broker=private_redis.url, set_as_current=False)
    with stock.connection_for_write() as connection:
        channel = connection.default_channel
        assert "_create_client" not in channel.__dict__
        assert channel._create_client() is not channel._create_client()


def test_a_plain_kombu_pool_to_the_same_broker_does_not_take_the_apps_place(private_redis):
    from kombu import pools

    plain = pools.connections[Connection(private_redis.url)]
    ours = pools.connections[ReusingConnection(private_redis.url)]
    assert ours is not plain
    with ours.acquire(block=True, timeout=2) as connection:
        channel = connection.default_channel
        assert channel._create_client() is channel._create_client()
