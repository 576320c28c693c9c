"""History's index by worker holds only runs a worker took (issue 12, launch cost).

A run has no worker when it is launched: a launch no longer writes this index, and a
worker taking the run adds one entry instead of moving one. History's worker filter
repeats the condition (``taskcenter.models.TAKEN_BY_A_WORKER``). Only the index is rebuilt.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("taskcenter", "0030_run_schedule_indexes_partial")]

    operations = [
        migrations.RemoveIndex(model_name="run", name="run_worker_created"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("worker", ""), _negated=True),
                fields=["worker", "-created_at", "-id"],
                name="run_worker_created",
            ),
        ),
    ]
