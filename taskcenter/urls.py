"""URL routes of the task center pages."""

from django.urls import path

from taskcenter import views

app_name = "taskcenter"

urlpatterns = [
    path("", views.catalogue_list, name="catalogue"),
    path("tasks/<str:task_name>/launch/", views.launch, name="launch"),
    path("runs/", views.run_list, name="run_list"),
    path("runs/<str:task_id>/", views.run_detail, name="run_detail"),
]
