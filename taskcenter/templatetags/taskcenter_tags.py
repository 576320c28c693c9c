"""Template filters for the task center pages."""

import datetime as dt
import json

from django import template
from django.utils import timezone
from django.utils.dateformat import format as date_format
from django.utils.html import format_html

from taskcenter.zones import offset_text, zone_label

register = template.Library()


@register.filter
def as_json(value) -> str:
    """Show a JSON value the way an operator typed it (autoescaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)


@register.filter
def duration_seconds(value) -> str:
    """A timedelta as seconds with two decimals, or a dash."""
    if value is None:
        return "–"
    return f"{value.total_seconds():.2f} s"


@register.filter(expects_localtime=True)
def when(value, fmt: str = "Y-m-d H:i:s") -> str:
    """A time in the active zone with its UTC offset (``2026-01-05 10:00:00 UTC+08:00``), never "CST".

    The zone's name is in the element's title and the page's header; ``fmt`` is a ``date`` format.
    Empty for None, so ``|default:"–"`` still applies.
    """
    if not isinstance(value, dt.datetime):
        return ""
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    local = timezone.localtime(value)  # the active zone, or the one a {% timezone %} block sets
    return format_html(
        '<time datetime="{}" title="{}">{} {}</time>',
        value.astimezone(dt.UTC).isoformat(),
        zone_label(local.tzinfo, at=local),
        date_format(local, fmt),
        offset_text(local.utcoffset()),
    )


@register.simple_tag
def current_zone() -> str:
    """The active zone by name and offset now: ``Asia/Shanghai, UTC+08:00``."""
    return zone_label()
