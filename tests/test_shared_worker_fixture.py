"""The session's shared worker is started again when an earlier test left it dead, so one broken
test fails alone instead of every later test timing out behind it."""

import os
import signal

import pytest

from config.celery import app as celery_app

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]


def test_a_shared_worker_killed_by_an_earlier_test_is_started_again(_shared_celery_worker, celery_worker):
    killed_pid = celery_worker.process.pid
    os.kill(killed_pid, signal.SIGKILL)
    celery_worker.process.wait(timeout=10)

    replacement = _shared_celery_worker.get()

    assert replacement.process.pid != killed_pid
    assert celery_app.control.ping(destination=[replacement.hostname], timeout=2)
