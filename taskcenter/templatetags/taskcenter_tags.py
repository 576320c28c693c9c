"""Template filters for the task center pages."""

import json

from django import template

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
