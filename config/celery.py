"""The one Celery application of the project.

Settings come from ``django.conf.settings`` under the ``CELERY_`` namespace;
tasks are found in each installed app's ``tasks`` module. Its workers check every
task message before handling it (``taskcenter.worker``), so no message crashes them;
every message it sends has secret arguments masked outside its body, and one due later
waits in the scheduled set until it is due (``taskcenter.amqp``).
"""

import os
from logging.config import dictConfig

from celery import Celery, signals

from taskcenter.amqp import pin_publish_settings
from taskcenter.worker import install as install_message_guard

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")

app = Celery("taskcenter", amqp="taskcenter.amqp:TaskcenterAMQP")
app.on_after_configure.connect(pin_publish_settings, weak=False)
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()
install_message_guard(app)


@signals.setup_logging.connect
def use_the_project_logging(**kwargs):
    """Log with ``settings.LOGGING`` (one format, with its UTC offset) instead of Celery's own.

    Connecting here also stops Celery from redirecting stdout and stderr to a logger:
    anything written there in pieces (a traceback printed by ``logging`` or a thread)
    became one log record per piece.
    """
    from django.conf import settings

    dictConfig(settings.LOGGING)
