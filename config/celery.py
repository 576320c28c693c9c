"""The one Celery application of the project.

Settings come from ``django.conf.settings`` under the ``CELERY_`` namespace;
tasks are found in each installed app's ``tasks`` module. Its workers check every
task message before handling it (``taskcenter.worker``), so no message crashes them;
every message it sends has secret arguments masked outside its body, and one due later
waits in the scheduled set until it is due (``taskcenter.amqp``).
"""

import os

from celery import Celery

from taskcenter.worker import install as install_message_guard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("taskcenter", amqp="taskcenter.amqp:TaskcenterAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install_message_guard(app)
