"""Workflows: chains, groups and chords of catalogued tasks, launched in one go.

Every node's task id is fixed before publishing, so all runs are recorded as
PENDING at once and the workflow's stages can be drawn before any step runs.
"""

import logging
from dataclasses import dataclass, field

from celery import chain, chord, group
from django.utils.translation import gettext

from taskcenter.models import RunSource, Workflow
from taskcenter.services.audit import Action
from taskcenter.services.errors import ServiceError
from taskcenter.services.launch import InvalidLaunch, PreparedLaunch, launch_prepare, launches_publish

logger = logging.getLogger(__name__)

MAX_STEPS = 100


@dataclass
class Step:
    """One task of a workflow: a catalogued task name and its own arguments."""

    task: str
    args: list = field(default_factory=list)
    kwargs: dict = field(default_factory=dict)
    queue: str | None = None
    priority: str | None = None


def workflow_launch(
    *,
    kind: str,
    steps: list[Step],
    callback: Step | None = None,
    launched_by=None,
    source: RunSource = RunSource.CODE,
) -> Workflow:
    """Launch a chain, group or chord; return the Workflow with its runs recorded.

    In a chain each step after the first receives the previous result as its
    first argument; a chord's ``callback`` receives the list of its group's results.
    Every step is checked, de-duplicated and published like a single launch.
    """
    errors = {}
    if kind not in Workflow.Kind.values:
        errors["kind"] = [gettext("Unknown workflow kind %(kind)s; use chain, group or chord.") % {"kind": repr(kind)}]
    if not steps or len(steps) > MAX_STEPS:
        errors["steps"] = [gettext("Give between 1 and %(limit)s steps.") % {"limit": MAX_STEPS}]
    if kind == Workflow.Kind.CHORD and callback is None:
        errors["callback"] = [gettext("A chord needs a callback task.")]
    if kind != Workflow.Kind.CHORD and callback is not None:
        errors["callback"] = [gettext("Only a chord takes a callback.")]
    if errors:
        raise InvalidLaunch(errors)

    prepared = []
    for index, step in enumerate(steps):
        leading = 1 if kind == Workflow.Kind.CHAIN and index > 0 else 0
        prepared.append(_prepare(step, leading, gettext("step %(number)s") % {"number": index + 1}))
    prepared_callback = _prepare(callback, 1, gettext("callback")) if callback else None

    if kind == Workflow.Kind.CHAIN:
        stages = [[p.task_id] for p in prepared]
    elif kind == Workflow.Kind.GROUP:
        stages = [[p.task_id for p in prepared]]
    else:
        stages = [[p.task_id for p in prepared], [prepared_callback.task_id]]
    every = prepared + ([prepared_callback] if prepared_callback else [])

    workflow = Workflow(kind=kind, stages=stages)
    launches_publish(
        launches=every,
        send=lambda: _canvas(kind, prepared, prepared_callback).apply_async(),
        launched_by=launched_by,
        source=source,
        action=Action.WORKFLOW,
        target=f"{kind} of {len(every)} tasks",
        group=workflow,
    )
    return workflow


def _prepare(step: Step, leading: int, label: str) -> PreparedLaunch:
    try:
        return launch_prepare(
            task_name=step.task,
            args=step.args,
            kwargs=step.kwargs,
            queue=step.queue,
            priority=step.priority,
            leading_arguments=leading,
        )
    except InvalidLaunch as exc:
        raise InvalidLaunch({f"{label} ({step.task})": [m for msgs in exc.errors.values() for m in msgs]}) from None
    except ServiceError as exc:
        raise InvalidLaunch({label: [str(exc)]}) from None


def _canvas(kind, prepared: list[PreparedLaunch], prepared_callback: PreparedLaunch | None):
    if kind == Workflow.Kind.CHAIN:
        return chain(*[p.signature() for p in prepared])
    if kind == Workflow.Kind.GROUP:
        return group([p.signature() for p in prepared])
    return chord([p.signature() for p in prepared], prepared_callback.signature())


def steps_from_json(data) -> tuple[str, list[Step], Step | None]:
    """Parse ``{"kind": ..., "steps": [{"task": ..., "args": [...], "kwargs": {...}}], "callback": {...}}``."""
    if not isinstance(data, dict):
        raise InvalidLaunch(
            {"spec": [gettext('The workflow must be a JSON object like {"kind": "chain", "steps": [...]}.')]}
        )
    kind = data.get("kind", "")
    raw_steps = data.get("steps")
    if not isinstance(raw_steps, list):
        raise InvalidLaunch(
            {"spec": [gettext('"steps" must be a list of {"task": ..., "args": [...], "kwargs": {...}}.')]}
        )
    steps = [_step(raw, gettext("step %(number)s") % {"number": i + 1}) for i, raw in enumerate(raw_steps)]
    callback = _step(data["callback"], gettext("callback")) if data.get("callback") is not None else None
    return kind, steps, callback


def _step(raw, label: str) -> Step:
    if not isinstance(raw, dict) or not isinstance(raw.get("task"), str):
        raise InvalidLaunch({"spec": [gettext('%(step)s must be an object with a "task" name.') % {"step": label}]})
    unknown = set(raw) - {"task", "args", "kwargs", "queue", "priority"}
    if unknown:
        raise InvalidLaunch(
            {
                "spec": [
                    gettext("%(step)s has unknown keys: %(keys)s.")
                    % {"step": label, "keys": ", ".join(sorted(unknown))}
                ]
            }
        )
    return Step(
        task=raw["task"],
        args=raw.get("args", []),
        kwargs=raw.get("kwargs", {}),
        queue=raw.get("queue"),
        priority=raw.get("priority"),
    )
