# Run rows record their own state, times, worker, outcome and attempts (issue 9).

from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('django_celery_results', '0014_alter_taskresult_status'),
        ('taskcenter', '0007_schedule_health'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddField(
            model_name='run',
            name='attempts',
            field=models.JSONField(blank=True, default=list),
        ),
        migrations.AddField(
            model_name='run',
            name='outcome',
            field=models.TextField(blank=True, default='', help_text='Result or exception, shortened.'),
        ),
        migrations.AddField(
            model_name='run',
            name='recorded_finished_at',
            field=models.DateTimeField(blank=True, db_column='finished_at', null=True),
        ),
        migrations.AddField(
            model_name='run',
            name='recorded_started_at',
            field=models.DateTimeField(blank=True, db_column='started_at', null=True),
        ),
        migrations.AddField(
            model_name='run',
            name='recorded_state',
            field=models.CharField(db_column='state', default='PENDING', max_length=20),
        ),
        migrations.AddField(
            model_name='run',
            name='worker',
            field=models.CharField(blank=True, default='', max_length=255),
        ),
        migrations.AlterField(
            model_name='run',
            name='source',
            field=models.CharField(choices=[('web', 'Web page'), ('admin', 'Admin'), ('api', 'API'), ('cli', 'Command line'), ('schedule', 'Schedule'), ('code', 'Application code'), ('external', 'Other client')], default='code', max_length=10),
        ),
        migrations.AddIndex(
            model_name='run',
            index=models.Index(fields=['recorded_state', '-id'], name='run_state_id'),
        ),
    ]
