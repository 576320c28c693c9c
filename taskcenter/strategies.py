"""The recovery strategies a failed, dead-lettered or orphaned run can be given (docs/operations.md)."""

from django.db import models


class Strategy(models.TextChoices):
    RETRY = "RETRY", "Retry: run again with the same arguments"
    RESUME = "RESUME", "Resume: run again from the last checkpoint"
    RESTART = "RESTART", "Restart: run again from scratch, discarding checkpoints"
    SKIP = "SKIP", "Skip: mark resolved, do nothing"
    MANUAL = "MANUAL", "Manual: leave it for an operator"


#: Strategies that launch a new run.
RELAUNCHING = (Strategy.RETRY, Strategy.RESUME, Strategy.RESTART)
