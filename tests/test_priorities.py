"""Named priorities map onto Redis priorities, where a lower number is served first."""

import pytest

from taskcenter.priorities import REDIS_PRIORITY_STEPS, Priority


def test_urgent_is_served_before_high_before_normal_before_low():
    order = sorted(Priority, key=lambda p: p.broker_priority)
    assert order == [Priority.URGENT, Priority.HIGH, Priority.NORMAL, Priority.LOW]


def test_every_named_priority_has_its_own_redis_list():
    assert sorted({p.broker_priority for p in Priority}) == REDIS_PRIORITY_STEPS
    assert len(REDIS_PRIORITY_STEPS) == len(Priority)


@pytest.mark.parametrize(
    ("number", "expected"),
    [(0, Priority.URGENT), (2, Priority.URGENT), (3, Priority.HIGH), (6, Priority.NORMAL), (9, Priority.LOW)],
)
def test_broker_numbers_are_read_back_as_the_level_redis_serves_them_at(number, expected):
    assert Priority.from_broker(number) is expected


def test_a_message_without_priority_counts_as_normal():
    assert Priority.from_broker(None) is Priority.NORMAL


def test_tasks_without_an_explicit_priority_are_sent_at_normal(settings):
    assert settings.CELERY_TASK_DEFAULT_PRIORITY == Priority.NORMAL.broker_priority
