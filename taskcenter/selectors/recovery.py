"""Reads for checkpoints and recovery: a run's checkpoints and actions, runs needing attention, strategies."""

from dataclasses import dataclass

from taskcenter import catalogue
from taskcenter.checkpoints import checkpoint_is_valid
from taskcenter.models import Checkpoint, RecoveryAction, RecoveryPolicy, Run
from taskcenter.strategies import Strategy

#: Checkpoints listed on a run's page.
CHECKPOINTS_SHOWN = 50


def checkpoints_for_run(task_id: str, *, limit: int = CHECKPOINTS_SHOWN) -> list[Checkpoint]:
    """The run's own checkpoints, newest first, each with ``valid`` (its checksum matches)."""
    checkpoints = list(Checkpoint.objects.filter(task_id=task_id).order_by("-id")[:limit])
    for checkpoint in checkpoints:
        checkpoint.valid = checkpoint_is_valid(checkpoint)
    return checkpoints


def recovery_actions_for_run(task_id: str) -> list[RecoveryAction]:
    """Strategies applied to the run, newest first."""
    return list(RecoveryAction.objects.filter(task_id=task_id).select_related("actor").order_by("-id")[:50])


def recovered_from(task_id: str) -> RecoveryAction | None:
    """The action that launched this run, if a strategy did (not one that gave its own message back)."""
    return RecoveryAction.objects.filter(new_task_id=task_id).exclude(task_id=task_id).order_by("-id").first()


def runs_needing_attention(*, limit: int = 200) -> list[tuple[RecoveryAction, Run | None]]:
    """Runs left MANUAL and not handled since, newest first, with their runs."""
    actions = list(
        RecoveryAction.objects.filter(strategy=Strategy.MANUAL, resolved_at=None)
        .select_related("actor")
        .order_by("-id")[:limit]
    )
    runs = Run.objects.filter(task_result_id__in=[a.task_id for a in actions]).select_related("task_result")
    by_id = {run.task_id: run for run in runs}
    return [(action, by_id.get(action.task_id)) for action in actions]


@dataclass(frozen=True)
class TaskStrategy:
    task_name: str
    default: str  # declared in code; "" for none
    override: RecoveryPolicy | None

    @property
    def effective(self) -> str:
        return self.override.strategy if self.override else self.default


def task_strategies() -> list[TaskStrategy]:
    """Every catalogued task with its strategy in code and the operator's override."""
    overrides = {p.task_name: p for p in RecoveryPolicy.objects.select_related("changed_by")}
    return [
        TaskStrategy(task_name=entry.name, default=entry.recovery or "", override=overrides.get(entry.name))
        for entry in catalogue.all_entries()
    ]


def runs_for_recovery(task_ids: list[str]) -> list[Run]:
    """The runs named, in the order given (unknown ids left out)."""
    runs = {r.task_id: r for r in Run.objects.filter(task_result_id__in=task_ids).select_related("task_result")}
    return [runs[t] for t in dict.fromkeys(task_ids) if t in runs]
