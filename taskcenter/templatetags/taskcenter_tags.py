"""Template filters for the task center pages."""

import json

from django import template

register = template.Library()


@register.filter
def as_json(value) -> str:
    """Show a JSON value the way an operator typed it (autoescaped by the template)."""
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True)
