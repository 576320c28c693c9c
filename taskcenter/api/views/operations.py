"""Queues (depth, pause, resume, purge) and workers (list, one worker, pool, queues, rate and time limits)."""

from django.conf import settings
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.response import Response

from taskcenter import permissions
from taskcenter.api.base import ApiView, StrictSerializer, parse, problems
from taskcenter.api.permissions import require
from taskcenter.services import queues, workers

QUEUES_REFUSED = "You need the 'manage queues' permission."
WORKERS_REFUSED = "You need the 'manage workers' permission."


class ReportSerializer(serializers.Serializer):
    """What an action did."""

    message = serializers.CharField()
    detail = serializers.DictField()


class PriorityDepthSerializer(serializers.Serializer):
    priority = serializers.CharField()
    count = serializers.IntegerField()


class QueueSerializer(serializers.Serializer):
    name = serializers.CharField()
    depth = serializers.IntegerField(allow_null=True, help_text="Null when the broker cannot be read.")
    by_priority = PriorityDepthSerializer(many=True)
    oldest_age = serializers.FloatField(allow_null=True, help_text="Seconds the oldest message has waited.")
    consumers = serializers.ListField(child=serializers.CharField())
    paused = serializers.BooleanField()


class QueuesSerializer(serializers.Serializer):
    queues = QueueSerializer(many=True)
    others = QueueSerializer(many=True, help_text="Queues that hold messages but are not configured.")
    problems = serializers.ListField(child=serializers.CharField())


class PurgeSerializer(StrictSerializer):
    confirm = serializers.CharField(help_text="The queue's name, to confirm.")


def _report(report) -> Response:
    return Response({"message": report.message, "detail": report.detail})


class QueueList(ApiView):
    @extend_schema(operation_id="queues_list", tags=["queues"], responses={200: QueuesSerializer, **problems()})
    def get(self, request):
        """Every configured queue: depth by priority, oldest message, consumers, paused."""
        overview = queues.queues_overview()
        return Response(
            QueuesSerializer(
                {"queues": overview.queues, "others": list(overview.others), "problems": overview.problems}
            ).data
        )


class QueuePause(ApiView):
    permission_classes = [require(permissions.can_manage_queues, QUEUES_REFUSED)]
    service = staticmethod(queues.queue_pause)

    @extend_schema(
        operation_id="queues_pause", tags=["queues"], request=None,
        responses={200: ReportSerializer, **problems(503, 504)},
    )  # fmt: skip
    def post(self, request, name):
        """Stop every worker consuming the queue (also workers that start later)."""
        return _report(self.service(name=name, actor=request.user))


class QueueResume(QueuePause):
    service = staticmethod(queues.queue_resume)

    @extend_schema(
        operation_id="queues_resume", tags=["queues"], request=None,
        responses={200: ReportSerializer, **problems(503, 504)},
    )  # fmt: skip
    def post(self, request, name):
        """Let the workers consume the queue again."""
        return super().post(request, name)


class QueuePurge(ApiView):
    permission_classes = [require(permissions.can_manage_queues, QUEUES_REFUSED)]

    @extend_schema(
        operation_id="queues_purge", tags=["queues"], request=PurgeSerializer,
        responses={200: ReportSerializer, **problems(503)},
    )  # fmt: skip
    def post(self, request, name):
        """Delete every waiting message of the queue; their runs are marked cancelled."""
        data = parse(PurgeSerializer, request.data)
        return _report(queues.queue_purge(name=name, confirmation=data["confirm"], actor=request.user))


class ActiveTaskSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()


class WorkerSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    queues = serializers.ListField(child=serializers.CharField())
    pool_implementation = serializers.CharField()
    pool_max_concurrency = serializers.IntegerField(allow_null=True)
    pool_processes = serializers.IntegerField(allow_null=True)
    active = ActiveTaskSerializer(many=True)
    reserved_count = serializers.IntegerField()
    processed = serializers.IntegerField()
    rate_limits = serializers.DictField(child=serializers.CharField())
    pid = serializers.IntegerField(allow_null=True)
    uptime = serializers.IntegerField(allow_null=True, help_text="Seconds since the worker started.")
    prefetch_count = serializers.IntegerField(allow_null=True)
    autoscaler = serializers.DictField(allow_null=True, help_text="min, max, ... when started with --autoscale.")
    scheduled_count = serializers.IntegerField(help_text="Runs waiting on the worker for their ETA.")
    succeeded = serializers.IntegerField(allow_null=True, help_text="Counted by the monitor since it came online.")
    failed = serializers.IntegerField(allow_null=True)
    retried = serializers.IntegerField(allow_null=True)


class HeldTaskSerializer(serializers.Serializer):
    id = serializers.CharField()
    name = serializers.CharField()
    eta = serializers.DateTimeField(allow_null=True)


class RegisteredTaskSerializer(serializers.Serializer):
    name = serializers.CharField()
    catalogued = serializers.BooleanField()
    rate_limit = serializers.CharField()
    soft_time_limit = serializers.CharField()
    time_limit = serializers.CharField()


class WorkerDetailSerializer(serializers.Serializer):
    hostname = serializers.CharField()
    worker = WorkerSerializer(source="info")
    reserved = HeldTaskSerializer(many=True)
    scheduled = HeldTaskSerializer(many=True, help_text="Runs waiting on the worker for their ETA.")
    revoked = serializers.ListField(child=serializers.CharField(), help_text="The first 100 ids.")
    revoked_count = serializers.IntegerField()
    registered = RegisteredTaskSerializer(many=True)


class RateLimitSerializer(serializers.Serializer):
    task_name = serializers.CharField()
    rate = serializers.CharField()
    changed_at = serializers.DateTimeField()


class WorkersSerializer(serializers.Serializer):
    workers = WorkerSerializer(many=True)
    rate_limits = RateLimitSerializer(many=True, help_text="Saved limits, applied by every worker that starts.")
    max_pool_processes = serializers.IntegerField()
    problem = serializers.CharField()


class PoolSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=["grow", "shrink"])
    n = serializers.IntegerField(min_value=1, max_value=10_000)


class RateLimitInputSerializer(StrictSerializer):
    task_name = serializers.CharField(max_length=255)
    rate = serializers.CharField(allow_blank=True, max_length=50, help_text='"10/s", "100/m", "1000/h"; empty removes.')


class WorkerList(ApiView):
    @extend_schema(operation_id="workers_list", tags=["workers"], responses={200: WorkersSerializer, **problems()})
    def get(self, request):
        """Workers that answer within a second: pool, queues, active tasks; saved rate limits."""
        overview = workers.workers_overview()
        return Response(
            WorkersSerializer(
                {
                    "workers": overview.workers,
                    "rate_limits": overview.rate_limits,
                    "max_pool_processes": settings.TASKCENTER_MAX_POOL_PROCESSES,
                    "problem": overview.problem,
                }
            ).data
        )


class WorkerPool(ApiView):
    permission_classes = [require(permissions.can_manage_workers, WORKERS_REFUSED)]

    @extend_schema(
        operation_id="workers_pool", tags=["workers"], request=PoolSerializer,
        responses={200: ReportSerializer, **problems(503, 504)},
    )  # fmt: skip
    def post(self, request, hostname):
        """Grow or shrink one worker's pool by ``n`` processes."""
        data = parse(PoolSerializer, request.data)
        resize = workers.worker_pool_grow if data["action"] == "grow" else workers.worker_pool_shrink
        return _report(resize(hostname=hostname, n=data["n"], actor=request.user))


class RateLimits(ApiView):
    permission_classes = [require(permissions.can_manage_workers, WORKERS_REFUSED)]

    @extend_schema(
        operation_id="workers_rate_limit", tags=["workers"], request=RateLimitInputSerializer,
        responses={200: ReportSerializer, **problems(503)},
    )  # fmt: skip
    def post(self, request):
        """Save a task's rate limit and tell every worker (empty ``rate`` removes it)."""
        data = parse(RateLimitInputSerializer, request.data)
        return _report(workers.rate_limit_set(task_name=data["task_name"], rate=data["rate"], actor=request.user))


class WorkerItem(ApiView):
    @extend_schema(
        operation_id="workers_retrieve", tags=["workers"],
        responses={200: WorkerDetailSerializer, **problems(404, 503)},
    )  # fmt: skip
    def get(self, request, hostname):
        """One worker: pool, queues, running, reserved, ETA and revoked runs, registered tasks with their limits."""
        detail = workers.worker_detail(hostname=hostname)
        if detail.broker_down:
            raise workers.BrokerDown(detail.problem)
        if not detail.online:
            raise workers.UnknownWorker(detail.problem)
        return Response(WorkerDetailSerializer(detail).data)


class WorkerPoolRestart(ApiView):
    permission_classes = [require(permissions.can_manage_workers, WORKERS_REFUSED)]

    @extend_schema(
        operation_id="workers_pool_restart", tags=["workers"], request=None,
        responses={200: ReportSerializer, **problems(404, 503, 504)},
    )  # fmt: skip
    def post(self, request, hostname):
        """Restart one worker's pool: each process is replaced once it is done with its current task."""
        return _report(workers.worker_pool_restart(hostname=hostname, actor=request.user))


class AutoscaleSerializer(StrictSerializer):
    min = serializers.IntegerField(min_value=1, max_value=10_000)
    max = serializers.IntegerField(min_value=1, max_value=10_000)


class WorkerAutoscale(ApiView):
    permission_classes = [require(permissions.can_manage_workers, WORKERS_REFUSED)]

    @extend_schema(
        operation_id="workers_autoscale", tags=["workers"], request=AutoscaleSerializer,
        responses={200: ReportSerializer, **problems(404, 503, 504)},
    )  # fmt: skip
    def post(self, request, hostname):
        """Set the fewest and most processes of a worker started with --autoscale."""
        data = parse(AutoscaleSerializer, request.data)
        return _report(
            workers.worker_autoscale(hostname=hostname, minimum=data["min"], maximum=data["max"], actor=request.user)
        )


class WorkerQueueSerializer(StrictSerializer):
    action = serializers.ChoiceField(choices=["add", "cancel"])
    queue = serializers.CharField(max_length=255)


class WorkerQueue(ApiView):
    permission_classes = [require(permissions.can_manage_workers, WORKERS_REFUSED)]

    @extend_schema(
        operation_id="workers_queue", tags=["workers"], request=WorkerQueueSerializer,
        responses={200: ReportSerializer, **problems(404, 503, 504)},
    )  # fmt: skip
    def post(self, request, hostname):
        """Make one worker consume a configured queue (add) or stop consuming it (cancel)."""
        data = parse(WorkerQueueSerializer, request.data)
        change = workers.worker_queue_add if data["action"] == "add" else workers.worker_queue_cancel
        return _report(change(hostname=hostname, queue=data["queue"], actor=request.user))


class TimeLimitSerializer(StrictSerializer):
    task_name = serializers.CharField(max_length=255)
    soft = serializers.FloatField(required=False, allow_null=True, help_text="Seconds; null or absent: the default.")
    hard = serializers.FloatField(required=False, allow_null=True, help_text="Seconds; null or absent: the default.")


class WorkerTimeLimit(ApiView):
    permission_classes = [require(permissions.can_manage_workers, WORKERS_REFUSED)]

    @extend_schema(
        operation_id="workers_time_limit", tags=["workers"], request=TimeLimitSerializer,
        responses={200: ReportSerializer, **problems(404, 503, 504)},
    )  # fmt: skip
    def post(self, request, hostname):
        """Set the soft and hard time limits one worker applies to a catalogued task, until it restarts."""
        data = parse(TimeLimitSerializer, request.data)
        return _report(
            workers.worker_time_limit_set(
                hostname=hostname, task_name=data["task_name"], soft=data.get("soft"), hard=data.get("hard"),
                actor=request.user,
            )
        )  # fmt: skip
