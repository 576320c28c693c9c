"""A NUL character anywhere in a request is refused with a 400 on every engine.

PostgreSQL cannot store or compare text holding NUL (psycopg raises DataError, which was a 500
on PostgreSQL for a run id like /runs/%00/ or ?ids=%00, found by tests/test_fuzz.py there).
"""

import pytest

from taskcenter.models import Run

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    "url, params",
    [
        ("/runs/%00/", None),
        ("/runs/progress/", {"ids": "a,\x00"}),
        ("/runs/", {"task_name": "x\x00y"}),
        ("/runs/", {"\x00": "1"}),
    ],
)
def test_a_nul_in_the_path_or_query_is_refused_with_400(staff_client, url, params):
    response = staff_client.get(url, params)
    assert response.status_code == 400
    assert b"NUL" in response.content


def test_a_nul_in_a_posted_field_is_refused_and_nothing_is_written(staff_client):
    before = Run.objects.count()
    response = staff_client.post("/tasks/examples.add/launch/", {"args": "[1, 2]\x00", "kwargs": "{}"})
    assert response.status_code == 400
    assert Run.objects.count() == before


def test_a_nul_in_a_cookie_is_refused(staff_client):
    staff_client.cookies["sessionid"] = "abc\x00"
    assert staff_client.get("/").status_code == 400


def test_the_api_refuses_a_nul_with_problem_details(staff_client):
    response = staff_client.get("/api/v1/runs/%00/")
    assert response.status_code == 400
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["status"] == 400


def test_a_request_without_nul_is_served(staff_client):
    assert staff_client.get("/runs/progress/", {"ids": "a,b"}).status_code == 200
