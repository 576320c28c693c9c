"""The broker's own figures, and the queue browser: a queue's messages; delete one or move it to dead letters."""

from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from taskcenter import permissions
from taskcenter.api.base import ApiView, StrictSerializer, parse, problems, query
from taskcenter.api.permissions import require
from taskcenter.api.views.operations import QUEUES_REFUSED, ReportSerializer, _report
from taskcenter.selectors.broker import MAX_OFFSET, PAGE_SIZE, broker_overview, queue_messages_page
from taskcenter.services import queues


class QueueListsSerializer(serializers.Serializer):
    name = serializers.CharField()
    total = serializers.IntegerField()
    by_priority = serializers.SerializerMethodField()

    def get_by_priority(self, queue) -> dict[str, int]:
        return dict(queue.by_priority)


class BrokerSerializer(serializers.Serializer):
    server = serializers.CharField()
    version = serializers.CharField()
    uptime_seconds = serializers.IntegerField(allow_null=True)
    connected_clients = serializers.IntegerField(allow_null=True)
    blocked_clients = serializers.IntegerField(allow_null=True)
    memory_used = serializers.CharField()
    memory_peak = serializers.CharField()
    memory_limit = serializers.CharField(help_text="maxmemory; empty when unlimited.")
    memory_policy = serializers.CharField(help_text="maxmemory-policy; anything but noeviction can delete messages.")
    evicted_keys = serializers.IntegerField(allow_null=True)
    aof_enabled = serializers.BooleanField(allow_null=True)
    aof_rewrite_status = serializers.CharField()
    aof_rewrite_seconds = serializers.IntegerField(allow_null=True)
    aof_write_status = serializers.CharField()
    rdb_save = serializers.CharField(allow_null=True, help_text="The `save` setting; null when CONFIG is refused.")
    rdb_last_save = serializers.DateTimeField(allow_null=True)
    rdb_save_status = serializers.CharField()
    rdb_changes_since_save = serializers.IntegerField(allow_null=True)
    unacked = serializers.IntegerField(help_text="Messages in kombu's `unacked` hash (held by workers).")
    unacked_index = serializers.IntegerField()
    scheduled = serializers.IntegerField(help_text="Delayed runs in taskcenter's scheduled set.")
    queues = QueueListsSerializer(many=True)
    warnings = serializers.ListField(child=serializers.CharField())


class MessageSerializer(serializers.Serializer):
    id = serializers.CharField(help_text="Pass to the delete and deadletter actions.")
    priority = serializers.CharField()
    position = serializers.IntegerField(help_text="From the oldest message of its priority list (0 is served next).")
    size = serializers.IntegerField(help_text="Bytes of the raw message.")
    readable = serializers.BooleanField(help_text="False for a message that is not Celery protocol 2 JSON.")
    task_name = serializers.CharField()
    task_id = serializers.CharField()
    arguments = serializers.CharField(help_text="JSON of args and kwargs, secret arguments masked (truncated).")
    age = serializers.FloatField(allow_null=True, help_text="Seconds since it was sent.")
    eta = serializers.CharField()
    has_run = serializers.SerializerMethodField()

    def get_has_run(self, message) -> bool:
        return message.run is not None


class PriorityMessagesSerializer(serializers.Serializer):
    priority = serializers.CharField()
    length = serializers.IntegerField()
    messages = MessageSerializer(many=True)


class QueueMessagesSerializer(serializers.Serializer):
    queue = serializers.CharField()
    offset = serializers.IntegerField()
    limit = serializers.IntegerField()
    next_offset = serializers.IntegerField(allow_null=True)
    priorities = PriorityMessagesSerializer(many=True)


class MessagesQuery(StrictSerializer):
    offset = serializers.IntegerField(required=False, min_value=0, max_value=MAX_OFFSET, default=0)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=PAGE_SIZE, default=PAGE_SIZE)


class MessageInput(StrictSerializer):
    id = serializers.CharField(max_length=100, help_text="A message's `id` from the messages list.")


class BrokerDetail(ApiView):
    @extend_schema(operation_id="broker_detail", tags=["queues"], responses={200: BrokerSerializer, **problems(503)})
    def get(self, request):
        """The broker's version, memory, persistence, clients, unacknowledged messages and queue lists."""
        return Response(BrokerSerializer(broker_overview()).data)


class QueueMessages(ApiView):
    @extend_schema(
        operation_id="queues_messages", tags=["queues"],
        parameters=[
            OpenApiParameter("offset", int, description="Skip this many messages of each priority (oldest first)."),
            OpenApiParameter("limit", int, description=f"At most this many per priority (1-{PAGE_SIZE})."),
        ],
        responses={200: QueueMessagesSerializer, **problems(503)},
    )  # fmt: skip
    def get(self, request, name):
        """A queue's waiting messages per priority, oldest first, secret arguments masked."""
        options = query(MessagesQuery, request)
        page = queue_messages_page(name=name, offset=options["offset"], limit=options["limit"])
        return Response(QueueMessagesSerializer(page).data)


class QueueMessageDelete(ApiView):
    permission_classes = [require(permissions.can_manage_queues, QUEUES_REFUSED)]
    service = staticmethod(queues.queue_message_delete)

    @extend_schema(
        operation_id="queues_message_delete", tags=["queues"], request=MessageInput,
        responses={200: ReportSerializer, **problems(409, 503)},
    )  # fmt: skip
    def post(self, request, name):
        """Delete exactly one waiting message; its run is marked cancelled."""
        data = parse(MessageInput, request.data)
        return _report(self.service(name=name, message_id=data["id"], actor=request.user))


class QueueMessageDeadletter(QueueMessageDelete):
    service = staticmethod(queues.queue_message_deadletter)

    @extend_schema(
        operation_id="queues_message_deadletter", tags=["queues"], request=MessageInput,
        responses={200: ReportSerializer, **problems(409, 503)},
    )  # fmt: skip
    def post(self, request, name):
        """Take one waiting message off the queue and keep it as a dead letter; its run is marked cancelled."""
        return super().post(request, name)
