"""When a crontab fires, in its own time zone, exactly once per wall-clock match.

Celery evaluates crontabs by adding deltas, which goes wrong around DST changes
(django-celery-beat#194). Here fire times are found by walking the calendar in
the schedule's time zone and converting each matching wall-clock time:

- a time that does not exist (clocks jump forward, e.g. 02:30 on a spring-forward
  night in Europe/Berlin) fires once, at the first instant after the jump (03:00);
- a time that exists twice (clocks fall back) fires once, at its first occurrence.

Fields follow Celery's crontab: day of week 0-6 with 0 = Sunday, and day of
month and day of week must both match (Celery's rule, unlike classic cron's OR).
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

from celery.schedules import crontab

#: How far ahead to look for a crontab that may never match (e.g. 30 February).
SEARCH_DAYS = 366 * 5

SHIFTED = "shifted"  # the wall-clock time did not exist; fired right after the clocks jumped
AMBIGUOUS = "ambiguous"  # the wall-clock time happened twice; fired at the first one
DST_DAY = "dst_day"  # a normal time on a day when the clocks change


@dataclass(frozen=True)
class CronFields:
    minutes: tuple[int, ...]
    hours: tuple[int, ...]
    days_of_month: frozenset[int]
    months: frozenset[int]
    days_of_week: frozenset[int]  # 0 = Sunday

    @classmethod
    def parse(cls, minute="*", hour="*", day_of_month="*", month_of_year="*", day_of_week="*") -> "CronFields":
        """Parse crontab fields with Celery's own parser; raises ValueError on bad input."""
        parsed = crontab(
            minute=minute, hour=hour, day_of_month=day_of_month, month_of_year=month_of_year, day_of_week=day_of_week
        )
        return cls(
            minutes=tuple(sorted(parsed.minute)),
            hours=tuple(sorted(parsed.hour)),
            days_of_month=frozenset(parsed.day_of_month),
            months=frozenset(parsed.month_of_year),
            days_of_week=frozenset(parsed.day_of_week),
        )

    def matches_day(self, day: date) -> bool:
        return (
            day.month in self.months and day.day in self.days_of_month and (day.isoweekday() % 7) in self.days_of_week
        )


@dataclass(frozen=True)
class FireTime:
    at: datetime  # aware, in the schedule's time zone
    note: str = ""  # SHIFTED, AMBIGUOUS, DST_DAY or ""


def fire_times(fields: CronFields, tz: ZoneInfo, after: datetime) -> Iterator[FireTime]:
    """Every fire time strictly after ``after`` (aware), in order."""
    after = after.astimezone(tz)
    last = None
    day = after.date()
    for _ in range(SEARCH_DAYS):
        if fields.matches_day(day):
            dst_day = _offset_changes_on(day, tz)
            for hour in fields.hours:
                for minute in fields.minutes:
                    fire = _resolve(datetime(day.year, day.month, day.day, hour, minute), tz)
                    if fire.at <= after or (last is not None and fire.at <= last):
                        continue  # before the start, or a jump folded it onto a time already fired
                    last = fire.at
                    yield fire if fire.note or not dst_day else FireTime(fire.at, DST_DAY)
        day += timedelta(days=1)


def next_fire_times(fields: CronFields, tz: ZoneInfo, after: datetime, count: int) -> list[FireTime]:
    """The next ``count`` fire times after ``after`` (fewer if the crontab rarely or never matches)."""
    times = []
    for fire in fire_times(fields, tz, after):
        times.append(fire)
        if len(times) == count:
            break
    return times


def next_fire_after(fields: CronFields, tz: ZoneInfo, after: datetime) -> datetime | None:
    """The first fire time strictly after ``after``, or None if there is none within five years."""
    return next((fire.at for fire in fire_times(fields, tz, after)), None)


def _resolve(wall: datetime, tz: ZoneInfo) -> FireTime:
    """Turn a naive wall-clock time into the instant it fires at."""
    first, second = wall.replace(tzinfo=tz, fold=0), wall.replace(tzinfo=tz, fold=1)
    if _round_trips(first, wall) and _round_trips(second, wall):
        if first.utcoffset() != second.utcoffset():
            return FireTime(first, AMBIGUOUS)
        return FireTime(first)
    # The time falls in a gap: fire at the instant the clocks jumped.
    return FireTime(_gap_end(second, first, tz), SHIFTED)


def _round_trips(aware: datetime, wall: datetime) -> bool:
    return aware.astimezone(UTC).astimezone(aware.tzinfo).replace(tzinfo=None, fold=0) == wall


def _gap_end(earlier: datetime, later: datetime, tz: ZoneInfo) -> datetime:
    """The first instant after a jump, between two instants on either side of it."""
    low, high = earlier.astimezone(UTC), later.astimezone(UTC)
    if low > high:
        low, high = high, low
    after_offset = high.astimezone(tz).utcoffset()
    while high - low > timedelta(seconds=1):
        middle = low + (high - low) / 2
        if middle.astimezone(tz).utcoffset() == after_offset:
            high = middle
        else:
            low = middle
    return high.replace(microsecond=0).astimezone(tz)


def _offset_changes_on(day: date, tz: ZoneInfo) -> bool:
    start = datetime(day.year, day.month, day.day, tzinfo=tz)
    end = (start + timedelta(days=1)).replace(tzinfo=tz)
    return start.utcoffset() != datetime(end.year, end.month, end.day, tzinfo=tz).utcoffset()
