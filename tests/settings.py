"""Settings for the test suite: the project's settings with development defaults."""

import os

os.environ.setdefault("DEBUG", "true")

from config.settings import *  # noqa: E402,F403
