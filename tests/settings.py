"""Settings for the test suite: the project's settings with development defaults."""

import os

os.environ.setdefault("DEBUG", "true")

from config.settings import *  # noqa: E402,F403

# Hashing a password the production way costs ~0.3 s; tests create many users.
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
