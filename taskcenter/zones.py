"""Time zones as pages show them: by name and UTC offset, and the zone each user chose."""

import datetime as dt
import functools
import zoneinfo

from django.conf import settings
from django.utils import timezone

#: Where a user's chosen zone is kept: the session, and a cookie that outlives it.
SESSION_KEY = "taskcenter_timezone"
COOKIE_NAME = "taskcenter_tz"
COOKIE_MAX_AGE = 365 * 24 * 3600


@functools.cache
def zone_names() -> tuple[str, ...]:
    """Every zone the system's tz database knows, sorted (read once per process)."""
    return tuple(sorted(zoneinfo.available_timezones()))


def zone_or_none(name) -> zoneinfo.ZoneInfo | None:
    """The zone called ``name`` if it is a known one, else None (never raises)."""
    if not isinstance(name, str) or name not in _zone_set():
        return None
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None


@functools.cache
def _zone_set() -> frozenset[str]:
    return frozenset(zone_names())


def offset_text(offset: dt.timedelta | None) -> str:
    """``UTC+08:00``, ``UTC-05:30``, ``UTC+00:00``: never an abbreviation such as CST."""
    if offset is None:
        return "UTC"
    minutes = int(offset.total_seconds() // 60)
    sign = "+" if minutes >= 0 else "-"
    hours, minutes = divmod(abs(minutes), 60)
    return f"UTC{sign}{hours:02d}:{minutes:02d}"


def zone_name(tz) -> str:
    """The tz database name of ``tz`` (``Asia/Shanghai``), or its ``str`` for other tzinfo."""
    return getattr(tz, "key", None) or str(tz)


def zone_label(tz=None, *, at: dt.datetime | None = None) -> str:
    """``Asia/Shanghai, UTC+08:00``: the zone (default: the active one) and its offset at ``at`` (default: now)."""
    tz = tz or timezone.get_current_timezone()
    moment = (at or timezone.now()).astimezone(tz)
    return f"{zone_name(tz)}, {offset_text(moment.utcoffset())}"


def default_zone_name() -> str:
    return settings.TIME_ZONE


def local_text(moment: dt.datetime, *, tz=None, seconds: bool = True) -> str:
    """``2027-03-01 10:00:00 UTC+08:00``: ``moment`` in ``tz`` (default: the active zone) with its offset."""
    local = moment.astimezone(tz or timezone.get_current_timezone())
    return f"{local:%Y-%m-%d %H:%M{':%S' if seconds else ''}} {offset_text(local.utcoffset())}"
