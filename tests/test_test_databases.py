"""The test harness on each engine: subprocesses reach the test database, a flush survives a deadlock."""

import dj_database_url
import pytest
from django.core.management.base import CommandError
from django.db import OperationalError, connection

from tests.conftest import _database_url, _flush_retrying_deadlocks


@pytest.mark.django_db
def test_the_url_given_to_workers_names_this_runs_test_database():
    """pytest-django's test database (test_<name>), also over a Unix socket folder as host."""
    parsed = dj_database_url.parse(_database_url())
    db = connection.settings_dict
    assert parsed["ENGINE"] == db["ENGINE"]
    assert str(parsed["NAME"]) == str(db["NAME"])
    if connection.vendor == "postgresql":
        assert db["NAME"].startswith("test_")
        assert (parsed["HOST"], parsed["USER"]) == (db["HOST"], db["USER"])
        assert str(parsed["PORT"]) == str(db["PORT"] or 5432)


def flush_failing(times: int, message: str):
    calls = []

    def teardown(self):
        calls.append(self)
        if len(calls) <= times:
            raise CommandError("Database test_x couldn't be flushed.") from OperationalError(message)

    return calls, _flush_retrying_deadlocks(teardown)


def test_a_flush_that_lost_a_deadlock_is_tried_again():
    calls, teardown = flush_failing(2, "deadlock detected")
    teardown("case")
    assert calls == ["case", "case", "case"]


def test_a_flush_failing_for_another_reason_is_not_retried():
    calls, teardown = flush_failing(1, 'relation "x" does not exist')
    with pytest.raises(CommandError):
        teardown("case")
    assert len(calls) == 1
