"""Beat's due-time decisions as pure logic, at fixed times: misfires, grace, DST.

``decide()`` is what ``TaskcenterScheduler`` asks for every schedule; ``simulate()``
below calls it the way beat does (sleep until the next due time, at most
``max_interval``) to follow a schedule across DST changes.
"""

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django_celery_beat.models import ClockedSchedule, CrontabSchedule, IntervalSchedule, PeriodicTask

from taskcenter.scheduler import (
    ONE_TIME_RECHECK,
    SEND,
    SKIP,
    WAIT,
    ClockedTiming,
    CrontabTiming,
    IntervalTiming,
    Policy,
    PolicySchedule,
    TaskcenterEntry,
    decide,
)
from taskcenter.schedules.timing import CronFields
from taskcenter.selectors.beat import _parse_id

BERLIN, NEW_YORK, SHANGHAI = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Shanghai")
HOURLY_UTC = CrontabTiming(CronFields.parse("0"), UTC)  # minute 0 of every hour
RUN_ONCE, SKIP_MISSED = Policy(), Policy(misfire="skip")


def at(hour: int, minute: int = 0, second: int = 0) -> datetime:
    return datetime(2026, 5, 4, hour, minute, second, tzinfo=UTC)


def daily(time: str, tz: ZoneInfo) -> CrontabTiming:
    hour, minute = time.split(":")
    return CrontabTiming(CronFields.parse(minute.lstrip("0") or "0", hour.lstrip("0") or "0"), tz)


def simulate(timing, start: datetime, end: datetime, *, policy=RUN_ONCE, max_interval: float = 300.0) -> list[datetime]:
    """Send times of a schedule last run at ``start``, checked as beat would until ``end``."""
    now = last = start.astimezone(UTC)  # beat's clock runs in real time, not wall-clock time
    sent = []
    while now < end:
        decision = decide(timing, last_run_at=last, now=now, policy=policy, tolerance=max(5.0, max_interval))
        if decision.verdict == WAIT:
            now += timedelta(seconds=max(1e-6, min(decision.delay, max_interval)))
            continue
        if decision.verdict == SEND:
            sent.append(now)
        last = now
    return sent


def local(times: list[datetime], tz: ZoneInfo) -> list[str]:
    return [f"{t.astimezone(tz):%m-%d %H:%M:%S%z}" for t in times]


# --- Misfires ------------------------------------------------------------------------


def test_run_once_coalesces_several_missed_crontab_times_into_one_send():
    decision = decide(HOURLY_UTC, last_run_at=at(10, 0, 1), now=at(15, 20), policy=RUN_ONCE)
    assert decision.verdict == SEND
    assert decision.covers == 5  # 11:00 .. 15:00
    assert decision.due_at == at(15)
    assert decision.skipped == 0
    assert decision.delay == 40 * 60  # then the next due time, 16:00
    # Once sent (last run now), nothing is due until 16:00.
    assert decide(HOURLY_UTC, last_run_at=at(15, 20), now=at(15, 20, 1)).verdict == WAIT


def test_skip_sends_none_of_the_missed_runs_and_waits_for_the_next_due_time():
    decision = decide(HOURLY_UTC, last_run_at=at(10, 0, 1), now=at(15, 20), policy=SKIP_MISSED)
    assert decision.verdict == SKIP
    assert decision.skipped == 5
    assert decision.reason == "misfire: skipped 5 missed run(s)"
    assert decision.delay == 40 * 60
    after = decide(HOURLY_UTC, last_run_at=at(15, 20), now=at(15, 20, 2), policy=SKIP_MISSED)
    assert (after.verdict, after.delay) == (WAIT, 40 * 60 - 2)
    assert decide(HOURLY_UTC, last_run_at=at(15, 20), now=at(16), policy=SKIP_MISSED).verdict == SEND


def test_skip_still_sends_a_due_time_that_is_on_time_and_drops_the_missed_ones_before_it():
    decision = decide(HOURLY_UTC, last_run_at=at(10, 0, 1), now=at(15, 0, 2), policy=SKIP_MISSED, tolerance=5)
    assert decision.verdict == SEND
    assert (decision.covers, decision.skipped) == (1, 4)
    assert decision.reason == "misfire: skipped 4 missed run(s)"


def test_a_due_time_seen_within_the_tolerance_is_not_a_misfire():
    for policy in (RUN_ONCE, SKIP_MISSED, Policy(grace_seconds=0)):
        decision = decide(HOURLY_UTC, last_run_at=at(14, 0, 1), now=at(15, 0, 4), policy=policy, tolerance=5)
        assert (decision.verdict, decision.covers, decision.skipped) == (SEND, 1, 0), policy


def test_a_missed_run_later_than_the_grace_time_is_skipped():
    policy = Policy(grace_seconds=600)
    late = decide(HOURLY_UTC, last_run_at=at(10, 0, 1), now=at(15, 20), policy=policy)
    assert late.verdict == SKIP
    assert late.reason == "grace time exceeded by 600s"
    assert late.cause == "grace"
    within = decide(HOURLY_UTC, last_run_at=at(10, 0, 1), now=at(15, 5), policy=policy)
    assert (within.verdict, within.covers) == (SEND, 5)


def test_interval_after_a_downtime_is_one_missed_due_time_whatever_the_policy_does_with_it():
    every_minute = IntervalTiming(timedelta(minutes=1))
    on_time = decide(every_minute, last_run_at=at(10), now=at(10, 1, 1))
    assert (on_time.verdict, on_time.covers, on_time.delay) == (SEND, 1, 60)
    coalesced = decide(every_minute, last_run_at=at(10), now=at(11, 0, 30))
    assert (coalesced.verdict, coalesced.covers) == (SEND, 60)
    skipped = decide(every_minute, last_run_at=at(10), now=at(11, 0, 30), policy=SKIP_MISSED)
    assert (skipped.verdict, skipped.reason) == (SKIP, "misfire: skipped 60 missed run(s)")
    waiting = decide(every_minute, last_run_at=at(10), now=at(10, 0, 20))
    assert (waiting.verdict, waiting.delay) == (WAIT, 40)


def test_interval_counts_real_time_across_a_dst_change_of_the_beat_time_zone():
    hourly = IntervalTiming(timedelta(hours=1))
    last = datetime(2026, 10, 25, 2, 30, tzinfo=BERLIN)  # the first 02:30 (+02:00) of the fall-back night
    just_before = decide(hourly, last_run_at=last, now=datetime(2026, 10, 25, 2, 29, 59, fold=1, tzinfo=BERLIN))
    assert (just_before.verdict, just_before.delay) == (WAIT, 1)  # an hour later is the second 02:30
    assert decide(hourly, last_run_at=last, now=datetime(2026, 10, 25, 2, 30, fold=1, tzinfo=BERLIN)).verdict == SEND


def test_clocked_schedule_is_due_once_at_its_time():
    once = ClockedTiming(at(12))
    assert decide(once, last_run_at=at(9), now=at(11, 59)).verdict == WAIT
    due = decide(once, last_run_at=at(9), now=at(12, 0, 1))
    assert (due.verdict, due.delay) == (SEND, ONE_TIME_RECHECK)
    assert decide(once, last_run_at=at(9), now=at(13), policy=SKIP_MISSED).verdict == SKIP


def test_beat_down_for_years_still_finds_the_latest_due_time_quickly():
    every_minute = CrontabTiming(CronFields.parse(), UTC)
    decision = decide(every_minute, last_run_at=at(10) - timedelta(days=400), now=at(10, 0, 30), policy=SKIP_MISSED)
    assert decision.verdict == SKIP
    assert decision.due_at == at(10)
    assert decision.reason == "misfire: skipped 10000+ missed run(s)"


# --- DST -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tz", "first_day", "expected"),
    [
        # Spring forward: 02:30 does not exist; it runs once, when the clocks jump to 03:00.
        (BERLIN, datetime(2026, 3, 28), ["03-28 02:30:00+0100", "03-29 03:00:00+0200", "03-30 02:30:00+0200"]),
        # Fall back: 02:30 happens twice; it runs once, at the first one.
        (BERLIN, datetime(2026, 10, 24), ["10-24 02:30:00+0200", "10-25 02:30:00+0200", "10-26 02:30:00+0100"]),
        (NEW_YORK, datetime(2026, 3, 7), ["03-07 02:30:00-0500", "03-08 03:00:00-0400", "03-09 02:30:00-0400"]),
        (NEW_YORK, datetime(2026, 10, 31), ["10-31 02:30:00-0400", "11-01 02:30:00-0500", "11-02 02:30:00-0500"]),
        (SHANGHAI, datetime(2026, 3, 28), ["03-28 02:30:00+0800", "03-29 02:30:00+0800", "03-30 02:30:00+0800"]),
        (SHANGHAI, datetime(2026, 10, 24), ["10-24 02:30:00+0800", "10-25 02:30:00+0800", "10-26 02:30:00+0800"]),
    ],
)
@pytest.mark.parametrize("max_interval", [30.0, 300.0])
def test_daily_0230_crontab_runs_exactly_once_a_day_across_dst_changes(tz, first_day, expected, max_interval):
    start = first_day.replace(tzinfo=tz)  # midnight before the first day
    sent = simulate(daily("02:30", tz), start, start + timedelta(days=3), max_interval=max_interval)
    assert local(sent, tz) == expected


def test_half_hourly_crontab_runs_each_slot_of_the_fall_back_night_once():
    """Every 30 minutes through the Berlin fall-back night: each wall-clock slot once, none twice."""
    start = datetime(2026, 10, 25, 1, 0, tzinfo=BERLIN)
    half_hourly = CrontabTiming(CronFields.parse("0,30"), BERLIN)
    sent = simulate(half_hourly, start, start + timedelta(hours=4), max_interval=5.0)  # 5 real hours
    assert local(sent, BERLIN) == [
        "10-25 01:30:00+0200", "10-25 02:00:00+0200", "10-25 02:30:00+0200", "10-25 03:00:00+0100",
        "10-25 03:30:00+0100", "10-25 04:00:00+0100", "10-25 04:30:00+0100",
    ]  # fmt: skip


# --- Entries -------------------------------------------------------------------------


def test_entry_of_a_crontab_task_is_timed_by_taskcenter_in_the_crontabs_time_zone():
    crontab = CrontabSchedule(minute="30", hour="2", timezone=BERLIN)
    task = PeriodicTask(
        name="nightly", task="examples.add", crontab=crontab, last_run_at=datetime(2026, 3, 28, 12, tzinfo=UTC)
    )
    entry = TaskcenterEntry(task)
    assert isinstance(entry.schedule, PolicySchedule)
    assert entry.policy == Policy()
    assert entry.schedule == TaskcenterEntry(task).schedule  # beat compares entries to see changes
    due = entry.schedule.timing.due(task.last_run_at, datetime(2026, 3, 29, 12, tzinfo=UTC))
    assert f"{due.ref.astimezone(BERLIN):%m-%d %H:%M%z}" == "03-29 03:00+0200"


def test_entry_of_an_interval_or_clocked_task_is_timed_by_taskcenter_too():
    every = PeriodicTask(name="often", task="examples.add", interval=IntervalSchedule(every=2, period="seconds"))
    assert TaskcenterEntry(every).schedule.timing == IntervalTiming(timedelta(seconds=2))
    when = datetime(2030, 1, 1, tzinfo=UTC)
    once = PeriodicTask(name="once", task="examples.add", one_off=True, clocked=ClockedSchedule(clocked_time=when))
    assert TaskcenterEntry(once).schedule.timing == ClockedTiming(when)


def test_entry_with_a_start_time_counts_due_times_from_the_start():
    start = datetime(2026, 5, 4, 9, 59, tzinfo=UTC)
    task = PeriodicTask(
        name="later", task="examples.add", interval=IntervalSchedule(every=10, period="minutes"), start_time=start
    )
    entry = TaskcenterEntry(task)
    assert entry.last_run_at == start - timedelta(minutes=10)  # due at the start, not 30 years of misfires


def test_beat_ids_name_host_and_process():
    assert _parse_id("web-1.example:4242:0123abcd") == {
        "id": "web-1.example:4242:0123abcd",
        "hostname": "web-1.example",
        "pid": 4242,
    }
    assert _parse_id("odd")["pid"] is None


# --- What beat refuses to send ---------------------------------------------------------


@pytest.mark.parametrize(
    ("task", "args", "options", "refused"),
    [
        ("examples.add", [], {"headers": {"periodic_task_name": "s"}}, ""),
        ("examples.add", [], {"headers": {"periodic_task_name": "s"}, "queue": "high", "priority": 3}, ""),
        ("celery.backend_cleanup", [], {"headers": {}}, ""),  # installed by Celery itself
        ("celery.backend_cleanup", [1], {}, "not in the catalogue"),
        ("celery.map", [], {}, "not in the catalogue"),
        ("examples.add", [], {"headers": {"task": "celery.map"}}, "headers (task)"),
        ("examples.add", [], {"headers": {"id": "x/../y"}}, "headers (id)"),
        ("examples.add", [], {"headers": {"root_id": "r", "parent_id": "p", "group": "g"}}, "group, parent_id"),
        ("examples.add", [], {"headers": {"taskcenter_recorded": True}}, "taskcenter_recorded"),
        ("examples.add", [], {"headers": ["task"]}, "not an object"),
        ("examples.add", [], {"exchange": "elsewhere"}, "exchange"),
        ("examples.add", [], {"routing_key": "elsewhere"}, "routing key"),
        ("examples.add", [], {"queue": "nobody-consumes-this"}, "not one of the configured queues"),
        ("examples.add", [], {"priority": 300}, "priority"),
    ],
)
def test_send_refusal(task, args, options, refused):
    from types import SimpleNamespace

    from taskcenter.scheduler import send_refusal

    reason = send_refusal(SimpleNamespace(task=task, args=args, kwargs={}, options=options))
    assert (refused in reason) if refused else reason == ""
