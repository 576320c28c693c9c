"""A user's named History filters."""

from taskcenter.models import SavedFilter


def saved_filters_for(*, user) -> list[SavedFilter]:
    """``user``'s saved filters by name (at most ``services.saved_filters.MAX_SAVED_FILTERS``)."""
    return list(SavedFilter.objects.filter(user=user).order_by("name")[:100])
