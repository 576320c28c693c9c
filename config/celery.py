"""The one Celery application of the project.

Settings come from ``django.conf.settings`` under the ``CELERY_`` namespace;
tasks are found in each installed app's ``tasks`` module. Its workers check every
task message before handling it (``taskcenter.worker``), so no message crashes them;
every message it sends has secret arguments masked outside its body (``MaskingAMQP``).
"""

import os

from celery import Celery

from taskcenter.worker import install as install_message_guard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("taskcenter", amqp="taskcenter.secret_arguments:MaskingAMQP")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install_message_guard(app)
