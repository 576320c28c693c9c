"""Top-level URL routes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

urlpatterns = [
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    path("api/v1/", include("taskcenter.api.urls")),  # REST API (docs/api.md)
    path("", include("taskcenter.urls_monitoring")),  # healthz, readyz, metrics (top level)
    path("", include("taskcenter.urls")),
]
