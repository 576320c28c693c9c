"""The recovery strategies a failed, dead-lettered or orphaned run can be given (docs/operations.md)."""

from django.db import models
from django.utils.translation import gettext_lazy as _


class Strategy(models.TextChoices):
    RETRY = "RETRY", _("Retry: run again with the same arguments")
    RESUME = "RESUME", _("Resume: run again from the last checkpoint")
    RESTART = "RESTART", _("Restart: run again from scratch, discarding checkpoints")
    SKIP = "SKIP", _("Skip: mark resolved, do nothing")
    MANUAL = "MANUAL", _("Manual: leave it for an operator")


#: Strategies that launch a new run.
RELAUNCHING = (Strategy.RETRY, Strategy.RESUME, Strategy.RESTART)
