"""Launch cost (issue 12): a launch writes 5 fewer index entries into taskcenter_run.

- ``launched_by`` loses its own index: ``run_launcher_created`` starts with the same column.
- ``retry_of``, ``batch``, ``workflow`` and ``cancelled_by`` are empty when a run is launched;
  their full indexes become partial ones holding only the runs that have a value, so a
  plain launch does not write them, while ``column = value`` (and the joins on them) still
  use them on SQLite and PostgreSQL.

The old indexes are dropped by name in SQL (``SeparateDatabaseAndState``): on SQLite,
``AlterField`` would rebuild the whole table, losing the state triggers of 0020.
"""

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

RUNS = "taskcenter_run"
#: Columns whose own (full, single-column) index goes.
COLUMNS = ("launched_by_id", "retry_of_id", "batch_id", "workflow_id", "cancelled_by_id")


def drop_column_indexes(apps, schema_editor):
    """Drop the non-unique, single-column indexes Django made for the foreign keys in ``COLUMNS``."""
    connection = schema_editor.connection
    with connection.cursor() as cursor:
        constraints = connection.introspection.get_constraints(cursor, RUNS)
    for name, info in constraints.items():
        if (
            info.get("index")
            and not info.get("unique")
            and not info.get("primary_key")
            and info.get("columns") in ([c] for c in COLUMNS)
            and not name.startswith("run_")
        ):
            schema_editor.execute(f"DROP INDEX {schema_editor.quote_name(name)}")


def create_column_indexes(apps, schema_editor):
    """Backwards: the full indexes again, as Django names them."""
    run = apps.get_model("taskcenter", "Run")
    for column in COLUMNS:
        field = next(f for f in run._meta.concrete_fields if f.column == column)
        schema_editor.execute(schema_editor._create_index_sql(run, fields=[field]))


def fk(to, related_name):
    return models.ForeignKey(
        blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL,
        related_name=related_name, to=to,
    )  # fmt: skip


class Migration(migrations.Migration):
    dependencies = [
        ("taskcenter", "0020_history_scale"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            database_operations=[migrations.RunPython(drop_column_indexes, create_column_indexes)],
            state_operations=[
                migrations.AlterField(model_name="run", name="batch", field=fk("taskcenter.batch", "runs")),
                migrations.AlterField(model_name="run", name="cancelled_by", field=fk(settings.AUTH_USER_MODEL, "+")),
                migrations.AlterField(model_name="run", name="launched_by", field=fk(settings.AUTH_USER_MODEL, "+")),
                migrations.AlterField(model_name="run", name="retry_of", field=fk("taskcenter.run", "reruns")),
                migrations.AlterField(model_name="run", name="workflow", field=fk("taskcenter.workflow", "runs")),
            ],
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(condition=models.Q(retry_of__isnull=False), fields=["retry_of"], name="run_retry_of"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(condition=models.Q(batch__isnull=False), fields=["batch"], name="run_batch"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(condition=models.Q(workflow__isnull=False), fields=["workflow"], name="run_workflow"),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(
                condition=models.Q(cancelled_by__isnull=False), fields=["cancelled_by"], name="run_cancelled_by"
            ),
        ),
    ]
