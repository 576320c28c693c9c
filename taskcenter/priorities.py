"""Named task priorities and their mapping onto the broker's priority numbers.

Operators pick LOW, NORMAL, HIGH or URGENT. The Redis transport keeps one list
per priority step (0, 3, 6, 9) and serves the *lowest* number first, so URGENT
maps to 0 and LOW to 9. (RabbitMQ counts the other way; only Redis is supported
for now, see docs/architecture.md.)
"""

from enum import StrEnum

from django.utils.translation import gettext_lazy as _


class Priority(StrEnum):
    LOW = "LOW"
    NORMAL = "NORMAL"
    HIGH = "HIGH"
    URGENT = "URGENT"

    @property
    def label(self) -> str:
        """The level's name for people (translated lazily; "Low", "Normal", ... in English)."""
        return _LABELS[self]

    @property
    def broker_priority(self) -> int:
        """The number sent with the message (Redis: lower is served first)."""
        return _BROKER_PRIORITY[self]

    @classmethod
    def choices(cls) -> list[tuple[str, str]]:
        return [(member.value, member.label) for member in cls]

    @classmethod
    def from_broker(cls, number: int | None) -> "Priority":
        """Return the named level a broker priority number falls into."""
        if number is None:
            return cls.NORMAL
        # Redis rounds a number down to its step: 0-2 -> 0, 3-5 -> 3, 6-8 -> 6, 9 -> 9.
        for member in sorted(cls, key=lambda m: m.broker_priority, reverse=True):
            if number >= member.broker_priority:
                return member
        return cls.URGENT


_LABELS = {
    Priority.LOW: _("Low"),
    Priority.NORMAL: _("Normal"),
    Priority.HIGH: _("High"),
    Priority.URGENT: _("Urgent"),
}

_BROKER_PRIORITY = {
    Priority.URGENT: 0,
    Priority.HIGH: 3,
    Priority.NORMAL: 6,
    Priority.LOW: 9,
}

# Steps the Redis transport keeps a list for; must contain every value above.
REDIS_PRIORITY_STEPS = sorted(_BROKER_PRIORITY.values())
