"""A run's parent and root (the runs whose tasks sent it), with a partial index for a run's children.

Nullable columns without a default: SQLite adds them with ALTER TABLE ADD COLUMN, so
``taskcenter_run`` is not rebuilt and the state triggers of migration 0020 stay.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("taskcenter", "0023_history_search"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="parent_task_id",
            field=models.CharField(blank=True, editable=False, max_length=255, null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="root_task_id",
            field=models.CharField(blank=True, editable=False, max_length=255, null=True),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("parent_task_id__isnull", False)), fields=["parent_task_id", "-id"], name="run_parent"
            ),
        ),
    ]
