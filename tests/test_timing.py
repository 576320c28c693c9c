"""Crontab fire times across DST changes: every wall-clock match fires exactly once."""

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from taskcenter.schedules.timing import AMBIGUOUS, SHIFTED, CronFields, next_fire_after, next_fire_times

BERLIN, NEW_YORK, SHANGHAI = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York"), ZoneInfo("Asia/Shanghai")


def times(expr: str, tz: ZoneInfo, start: datetime, count: int) -> list[str]:
    fields = CronFields.parse(*expr.split())
    return [f"{f.at:%m-%d %H:%M%z}{' ' + f.note if f.note in (SHIFTED, AMBIGUOUS) else ''}"
            for f in next_fire_times(fields, tz, start, count)]  # fmt: skip


def test_quarter_hourly_job_on_spring_forward_night_skips_no_slot_and_doubles_none():
    start = datetime(2026, 3, 29, 1, 30, tzinfo=BERLIN)
    assert times("*/15 * * * *", BERLIN, start, 4) == [
        "03-29 01:45+0100", "03-29 03:00+0200 shifted", "03-29 03:15+0200", "03-29 03:30+0200",
    ]  # fmt: skip


def test_half_hourly_job_on_fall_back_night_runs_the_repeated_hour_once():
    start = datetime(2026, 10, 25, 1, 45, tzinfo=BERLIN)
    assert times("*/30 * * * *", BERLIN, start, 4) == [
        "10-25 02:00+0200 ambiguous", "10-25 02:30+0200 ambiguous", "10-25 03:00+0100", "10-25 03:30+0100",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("tz", "day", "expected"),
    [
        (NEW_YORK, datetime(2026, 3, 7, 12), ["03-08 03:00-0400 shifted", "03-09 02:30-0400"]),
        (NEW_YORK, datetime(2026, 10, 31, 12), ["11-01 01:30-0400 ambiguous", "11-02 01:30-0500"]),
        (SHANGHAI, datetime(2026, 3, 28, 12), ["03-29 02:30+0800", "03-30 02:30+0800"]),
    ],
)
def test_daily_job_runs_once_a_day_through_dst_changes(tz, day, expected):
    expr = "30 1 * * *" if expected[0].startswith("11-01") else "30 2 * * *"
    assert times(expr, tz, day.replace(tzinfo=tz), 2) == expected


def test_day_of_week_uses_celerys_numbering_and_both_day_fields_must_match():
    fields = CronFields.parse("0", "9", "1-7", "*", "1")  # 09:00 on a Monday in the first week
    fire = next_fire_after(fields, SHANGHAI, datetime(2026, 11, 22, tzinfo=SHANGHAI))
    assert fire == datetime(2026, 12, 7, 9, 0, tzinfo=SHANGHAI)


def test_a_crontab_that_never_matches_is_refused_or_has_no_next_run():
    try:
        fields = CronFields.parse("0", "0", "30", "2", "*")
    except ValueError as exc:  # Celery 5.7 refuses a day that never occurs in the months given
        assert "never occurs" in str(exc)
        return
    assert next_fire_after(fields, BERLIN, datetime(2026, 1, 1, tzinfo=BERLIN)) is None


@pytest.mark.parametrize("bad", [("61", "*", "*", "*", "*"), ("*", "25", "*", "*", "*"), ("x", "*", "*", "*", "*")])
def test_invalid_fields_raise_value_error(bad):
    with pytest.raises(ValueError):
        CronFields.parse(*bad)
