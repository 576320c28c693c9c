"""Top-level URL routes."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.shortcuts import redirect
from django.templatetags.static import static
from django.urls import include, path


def favicon(request):
    """Browsers ask for /favicon.ico on every page (and the admin's): send them to the shipped icon."""
    return redirect(static("taskcenter/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon, name="favicon"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("i18n/", include("django.conf.urls.i18n")),  # set_language: the language switcher (POST)
    path("admin/", admin.site.urls),
    path("api/v1/", include("taskcenter.api.urls")),  # REST API (docs/api.md)
    path("", include("taskcenter.urls_monitoring")),  # healthz, readyz, metrics (top level)
    path("", include("taskcenter.urls")),
]
