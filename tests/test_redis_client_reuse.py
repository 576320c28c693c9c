"""A worker's kombu channels reuse one redis-py client per connection pool (issue 12, part 3).

kombu built a new ``redis.Redis`` for each acknowledgement, unacked-index write and event
PUBLISH; ``taskcenter.worker.reuse_redis_clients`` (installed by the worker's message
guard) keeps one per pool. Checked on a real Redis server: the same client serves every
call, messages still travel and are acknowledged, and a new pool gets a new client.
"""

import pytest
from kombu import Connection, Exchange, Producer, Queue

from taskcenter.worker import reuse_redis_clients


@pytest.fixture
def connection(private_redis):
    reuse_redis_clients()
    with Connection(private_redis.url) as connection:
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


def test_installing_twice_wraps_once():
    from kombu.transport import redis as kombu_redis

    reuse_redis_clients()
    installed = kombu_redis.Channel._create_client
    reuse_redis_clients()
    assert kombu_redis.Channel._create_client is installed
