"""The project's task-message factory and sender (installed as the app's ``amqp`` class in ``config/celery.py``).

- Secret arguments are masked outside the message body (``taskcenter.secret_arguments.MaskingAMQP``).
- Its broker connections reuse one redis-py client per pool (``taskcenter.broker.ReusingConnection``).
- A message due later is held in taskcenter's scheduled set and published when due
  (``taskcenter.scheduled_set``); ``publish_task_message`` publishes at once.
"""

from functools import cached_property

from taskcenter.broker import ReusingConnection
from taskcenter.scheduled_set import holding_sender
from taskcenter.secret_arguments import MaskingAMQP


class TaskcenterAMQP(MaskingAMQP):
    Connection = ReusingConnection

    @cached_property
    def publish_task_message(self):
        """Celery's own sender: publishes now, whatever the message's ETA."""
        return self._create_task_sender()

    @cached_property
    def send_task_message(self):
        return holding_sender(self.publish_task_message)
