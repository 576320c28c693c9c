"""Typed readers for environment variables, used once by ``config.settings``.

Each reader raises ``ImproperlyConfigured`` with the variable's name when a
value cannot be parsed, so a typo stops start-up with a clear message instead
of surfacing later as a confusing error.
"""

import os

from django.core.exceptions import ImproperlyConfigured

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_str(name: str, default: str | None = None, *, environ=os.environ) -> str | None:
    """Return the variable as a string, or ``default`` when it is unset."""
    value = environ.get(name)
    return default if value is None else value.strip()


def env_bool(name: str, default: bool, *, environ=os.environ) -> bool:
    """Return the variable as a boolean (1/0, true/false, yes/no, on/off)."""
    value = environ.get(name)
    if value is None:
        return default
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ImproperlyConfigured(f"{name}={value!r} is not a boolean; use true or false.")


def env_int(name: str, default: int, *, minimum: int | None = None, environ=os.environ) -> int:
    """Return the variable as an integer, optionally not below ``minimum``."""
    value = environ.get(name)
    if value is None or value.strip() == "":
        return default
    try:
        number = int(value.strip())
    except ValueError:
        raise ImproperlyConfigured(f"{name}={value!r} is not an integer.") from None
    if minimum is not None and number < minimum:
        raise ImproperlyConfigured(f"{name}={number} must be at least {minimum}.")
    return number


def env_list(name: str, default: list[str], *, environ=os.environ) -> list[str]:
    """Return a comma-separated variable as a list of non-empty, stripped items."""
    value = environ.get(name)
    if value is None:
        return list(default)
    return [item.strip() for item in value.split(",") if item.strip()]


def load_dotenv(path: str | None, *, environ=os.environ) -> bool:
    """Read ``KEY=VALUE`` lines of a development ``.env`` into ``environ``, if the file exists.

    Variables already set win (production sets its own and has no ``.env``). Blank lines
    and ``#`` comments are skipped; one pair of surrounding quotes is removed.
    """
    if not path or not os.path.isfile(path):
        return False
    with open(path, encoding="utf-8") as lines:
        for line in lines:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            name, value = (part.strip() for part in line.removeprefix("export ").split("=", 1))
            if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
                value = value[1:-1]
            environ.setdefault(name, value)
    return True
