"""Run the monitor: Celery events in, worker states (Redis) and per-minute figures (database) out."""

from django.core.management.base import BaseCommand
from django.utils.translation import gettext as _

from taskcenter.broker import use_long_lived_timeouts
from taskcenter.monitor.runner import Monitor


class Command(BaseCommand):
    help = _(
        "Consume Celery's event stream and keep worker states in Redis and per-minute task figures, "
        "running totals and queue samples in the database. Runs until SIGTERM or SIGINT."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--flush-interval",
            type=float,
            default=None,
            help=_("Seconds between two writes of the counts (default: TASKCENTER_MONITOR_FLUSH_INTERVAL or 2)."),
        )
        parser.add_argument(
            "--sample-interval",
            type=float,
            default=None,
            help=_("Seconds between two queue samples (default: TASKCENTER_MONITOR_SAMPLE_INTERVAL or 10)."),
        )
        parser.add_argument(
            "--max-tasks",
            type=int,
            default=None,
            help=_("Task ids remembered (LRU) for names and queues (default: TASKCENTER_MONITOR_MAX_TASKS or 100000)."),
        )

    def handle(self, *args, **options):
        use_long_lived_timeouts()  # a kept-open event stream tolerates a short Redis stall
        Monitor(
            flush_interval=options["flush_interval"],
            sample_interval=options["sample_interval"],
            max_tasks=options["max_tasks"],
        ).run()
