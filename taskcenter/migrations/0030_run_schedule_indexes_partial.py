"""The two indexes on a run's schedule hold only runs a schedule sent (issue 12, launch cost).

A launch from a page, the API or code has no schedule: it no longer writes either index.
Queries by schedule repeat the indexes' condition (``taskcenter.models.SENT_BY_SCHEDULE``),
which SQLite needs in order to use a partial index; as "not equal to ''", which SQLite never
walks an index by, so it keeps walking them by "= name". Only the indexes are rebuilt; no row changes.
"""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("taskcenter", "0029_field_verbose_names")]

    operations = [
        migrations.RemoveIndex(model_name="run", name="run_schedule_id"),
        migrations.RemoveIndex(model_name="run", name="run_schedule_time"),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("periodic_task_name", ""), _negated=True),
                fields=["periodic_task_name", "-id"],
                name="run_schedule_id",
            ),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(("periodic_task_name", ""), _negated=True),
                fields=["periodic_task_name", "-created_at", "-id"],
                name="run_schedule_time",
            ),
        ),
    ]
