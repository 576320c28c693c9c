"""Save and delete a user's named History filters."""

from urllib.parse import parse_qsl, urlencode

from django.utils.translation import gettext as _

from taskcenter.models import SavedFilter
from taskcenter.services.errors import InvalidInput

#: At most this many saved filters per user.
MAX_SAVED_FILTERS = 50
#: Query parameters that are page positions, not filters: never saved.
CURSORS = ("before", "after")


def saved_filter_save(*, user, name: str, query: str) -> SavedFilter:
    """Save ``query`` (History's query string) as ``name`` for ``user``, replacing one of the same name."""
    name = name.strip() if isinstance(name, str) else ""
    pairs = [(k, v) for k, v in parse_qsl(query if isinstance(query, str) else "") if k not in CURSORS and v]
    query = urlencode(pairs)
    errors: dict[str, list[str]] = {}
    if not name or len(name) > 100:
        errors["name"] = [_("Give the filter a name of 1 to 100 characters.")]
    if not query or len(query) > 2000:
        errors["query"] = [_("Set at least one filter (at most 2,000 characters) before saving it.")]
    existing = SavedFilter.objects.filter(user=user)
    if not existing.filter(name=name).exists() and existing.count() >= MAX_SAVED_FILTERS:
        errors["name"] = [
            _("You have %(count)d saved filters already: delete one first.") % {"count": MAX_SAVED_FILTERS}
        ]
    if errors:
        raise InvalidInput("; ".join(e for errs in errors.values() for e in errs), errors=errors)
    saved, _created = SavedFilter.objects.update_or_create(user=user, name=name, defaults={"query": query})
    return saved


def saved_filter_delete(*, user, pk: int) -> bool:
    """Delete ``user``'s saved filter ``pk``; False when they have none of that id."""
    deleted, _by_model = SavedFilter.objects.filter(user=user, pk=pk).delete()
    return bool(deleted)
