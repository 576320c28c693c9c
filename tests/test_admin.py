"""The admin reaches schedules, results and runs."""

import pytest
from django.urls import reverse

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "name",
    [
        "admin:django_celery_beat_periodictask_changelist",
        "admin:django_celery_beat_periodictask_add",
        "admin:django_celery_results_taskresult_changelist",
        "admin:taskcenter_run_changelist",
    ],
)
def test_admin_pages_open(staff_client, name):
    assert staff_client.get(reverse(name)).status_code == 200


def test_navigation_links_pages_and_admin(staff_client):
    page = staff_client.get(reverse("taskcenter:catalogue")).content.decode()
    for name in ("taskcenter:catalogue", "taskcenter:run_list", "admin:index"):
        assert f'href="{reverse(name)}"' in page


def test_run_admin_finds_a_pending_run_by_task_id(staff_client):
    from taskcenter.models import Run

    Run.objects.create(task_result_id="abc-123", task_name="examples.add", queue="high")
    response = staff_client.get(reverse("admin:taskcenter_run_changelist"), {"q": "abc-123"})
    assert response.status_code == 200
    assert "abc-123" in response.content.decode()
