"""Who may do what. Pages ask these functions; services do not (they trust their caller).

Permissions (app label ``taskcenter``):

- ``view_run``: see the pages (staff users only);
- ``launch_any_task`` or ``launch_task:<task name>``: launch catalogued tasks;
- ``control_run``: cancel, terminate and retry runs;
- ``manage_queues``: pause, resume and purge queues; delete a message or move it to dead letters;
- ``manage_workers``: resize pools and set rate limits;
- ``manage_notifications``: add, change, delete and test notification channels and rules.
- ``manage_deadletters``: replay (with the task's launch permission) and discard dead letters.
- ``change_retry_policy``: override the retry policy of catalogued tasks.
- ``manage_recovery``: set the recovery strategy of task types (applying one to a run needs
  ``control_run`` and the task's launch permission).
- ``delete_run``: delete the record of a finished run (the API's ``DELETE /api/v1/runs/<id>/``).

Per-task launch permissions are created for every catalogued task after
``migrate`` (see ``ensure_task_permissions``).
"""

from django.contrib.auth.models import Permission
from django.contrib.contenttypes.models import ContentType

from taskcenter import catalogue

APP = "taskcenter"
TASK_PERMISSION_PREFIX = "launch_task:"


def can_view(user) -> bool:
    return bool(user.is_active and user.is_staff and user.has_perm(f"{APP}.view_run"))


def can_launch(user, task_name: str) -> bool:
    return can_view(user) and (
        user.has_perm(f"{APP}.launch_any_task") or user.has_perm(f"{APP}.{TASK_PERMISSION_PREFIX}{task_name}")
    )


def can_launch_something(user) -> bool:
    return any(can_launch(user, entry.name) for entry in catalogue.all_entries())


def can_control(user) -> bool:
    return can_view(user) and user.has_perm(f"{APP}.control_run")


def can_manage_queues(user) -> bool:
    return can_view(user) and user.has_perm(f"{APP}.manage_queues")


def can_manage_workers(user) -> bool:
    return can_view(user) and user.has_perm(f"{APP}.manage_workers")


def ensure_task_permissions(**_kwargs) -> int:
    """Create a ``launch_task:<name>`` permission for every catalogued task; return how many were new."""
    from taskcenter.models import Run

    content_type = ContentType.objects.get_for_model(Run)
    existing = set(
        Permission.objects.filter(content_type=content_type, codename__startswith=TASK_PERMISSION_PREFIX).values_list(
            "codename", flat=True
        )
    )
    new = [
        Permission(
            content_type=content_type,
            codename=f"{TASK_PERMISSION_PREFIX}{entry.name}"[:100],
            name=f"Can launch {entry.name}"[:255],
        )
        for entry in catalogue.all_entries()
        if f"{TASK_PERMISSION_PREFIX}{entry.name}"[:100] not in existing
    ]
    Permission.objects.bulk_create(new, ignore_conflicts=True)
    return len(new)


def can_add_schedule(user, task_name: str | None = None) -> bool:
    """Create (or duplicate) periodic tasks; with a task, also be allowed to launch it."""
    allowed = can_view(user) and user.has_perm("django_celery_beat.add_periodictask")
    return allowed and (task_name is None or can_launch(user, task_name))


def can_change_schedule(user, task_name: str | None = None) -> bool:
    """Edit, enable and disable periodic tasks; with a task, also be allowed to launch it."""
    allowed = can_view(user) and user.has_perm("django_celery_beat.change_periodictask")
    return allowed and (task_name is None or can_launch(user, task_name))


def can_delete_schedule(user) -> bool:
    return can_view(user) and user.has_perm("django_celery_beat.delete_periodictask")


def can_act_on_schedule(user, action: str, task_name: str) -> bool:
    """May ``user`` apply a schedule action ("run_now", "enable", ...) to a schedule of ``task_name``?"""
    if action == "run_now":
        return can_launch(user, task_name)
    if action in ("enable", "disable"):
        return can_change_schedule(user, task_name)
    if action == "duplicate":
        return can_add_schedule(user, task_name)
    if action == "delete":
        return can_delete_schedule(user)
    return False


def can_manage_notifications(user) -> bool:
    """Add, change, delete and test notification channels and rules."""
    return can_view(user) and user.has_perm(f"{APP}.manage_notifications")


def can_manage_deadletters(user) -> bool:
    """Replay and discard dead letters (a replay also needs the task's launch permission)."""
    return can_view(user) and user.has_perm(f"{APP}.manage_deadletters")


def can_change_retry_policy(user) -> bool:
    """Edit (or reset) the retry policy of catalogued tasks: ``change_retry_policy``."""
    return can_view(user) and user.has_perm(f"{APP}.change_retry_policy")


def can_manage_recovery(user) -> bool:
    """Set the recovery strategy of task types (``manage_recovery``)."""
    return can_view(user) and user.has_perm(f"{APP}.manage_recovery")


def can_recover(user, task_name: str) -> bool:
    """Apply a strategy to a run: control runs, and be allowed to launch its task (a strategy may re-run it)."""
    return can_control(user) and can_launch(user, task_name)


def can_delete_run(user) -> bool:
    """Delete the record of a finished run (``delete_run``, a permission of its own)."""
    return can_view(user) and user.has_perm(f"{APP}.delete_run")
