"""The one Celery application of the project.

Settings come from ``django.conf.settings`` under the ``CELERY_`` namespace;
tasks are found in each installed app's ``tasks`` module.
"""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("taskcenter")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
