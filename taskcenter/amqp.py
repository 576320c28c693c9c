"""The project's task-message factory and sender (installed as the app's ``amqp`` class in ``config/celery.py``).

- Secret arguments are masked outside the message body (``taskcenter.secret_arguments.MaskingAMQP``).
- Its broker connections reuse one redis-py client per pool (``taskcenter.broker.ReusingConnection``).
- Its producers skip what kombu redoes at every publish for a queue or exchange already
  declared on their connection (``DeclaredOnceProducer``), and the settings Celery reads at
  every publish are copied into the app's own configuration once loaded (``pin_publish_settings``).
- A message due later is held in taskcenter's scheduled set and published when due
  (``taskcenter.scheduled_set``); ``publish_task_message`` publishes at once.
"""

from functools import cached_property

from kombu import Producer

from taskcenter.broker import ReusingConnection
from taskcenter.scheduled_set import holding_sender
from taskcenter.secret_arguments import MaskingAMQP

#: The settings Celery looks up at every publish (``send_task``, ``Task.apply_async``, ``as_task_v2``).
PUBLISH_SETTINGS = ("task_always_eager", "task_repr_maxlevels", "task_send_sent_event", "broker_pool_acquire_timeout")


def pin_publish_settings(sender, **_) -> None:
    """Copy the settings every publish reads into the app's own configuration, once it is loaded.

    Celery finds a setting under the ``CELERY_`` namespace by trying each of its spellings
    in each source: for one left at Celery's default, that is several failed lookups in
    Django's settings (an ``AttributeError`` each) before Celery's defaults, about 10 µs,
    and a publish does six. Copied, each is one dictionary hit. A value set later on
    ``app.conf`` (either spelling) still wins; a Django setting changed after start-up
    (``override_settings``) no longer reaches these four, as it already did not reach the
    settings Celery caches itself (the serializer, the queues, the routes...).
    """
    conf = sender.conf
    for name in PUBLISH_SETTINGS:
        if name not in conf.changes:
            conf.changes[name] = conf[name]


class DeclaredOnceProducer(Producer):
    """A kombu producer that returns at once for a queue or exchange its connection already declared.

    kombu declares the task's queue and the event exchange before every publish; for one
    already declared on the connection it copies the entity, binds the copy to the
    channel (twice with retries on), then finds it in the connection's cache of declared
    entities and does nothing: about a tenth of a publish. This looks in the same cache
    first. kombu empties that cache whenever the connection is lost or closed, so after a
    reconnect the first publish declares again, exactly as before.
    """

    def maybe_declare(self, entity, retry=False, **retry_policy):
        if entity and entity.can_cache_declaration:
            connection = self.connection
            if connection is not None and hash(entity) in connection.declared_entities:
                return False
        return super().maybe_declare(entity, retry, **retry_policy)


class TaskcenterAMQP(MaskingAMQP):
    Connection = ReusingConnection

    @property
    def producer_pool(self):
        """Celery's producer pool of the app's connection, making ``DeclaredOnceProducer`` producers.

        The pool is kombu's process-wide one for this connection; the app's connections
        hash apart from plain kombu ones (``ReusingConnection``), so no other app shares it.
        """
        if self._producer_pool is None:
            super().producer_pool.Producer = DeclaredOnceProducer
        return self._producer_pool

    publisher_pool = producer_pool

    @cached_property
    def publish_task_message(self):
        """Celery's own sender: publishes now, whatever the message's ETA."""
        return self._create_task_sender()

    @cached_property
    def send_task_message(self):
        return holding_sender(self.publish_task_message)
