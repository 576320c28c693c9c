"""The user's preferences: the time zone pages show and read times in."""

from django.contrib import messages
from django.http import HttpResponseRedirect
from django.shortcuts import render
from django.urls import reverse
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods

from taskcenter.forms.preferences import TimeZoneForm
from taskcenter.views.common import staff_required
from taskcenter.zones import COOKIE_MAX_AGE, COOKIE_NAME, SESSION_KEY, default_zone_name, zone_label, zone_or_none


@staff_required
@require_http_methods(["GET", "POST"])
def preferences(request):
    """Show and save the user's time zone (kept in the session and in a cookie)."""
    form = TimeZoneForm(request.POST or None, initial={"timezone": timezone.get_current_timezone_name()})
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not next_url.startswith("/") or not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = ""
    if request.method == "POST":
        if form.is_valid():
            name = form.cleaned_data["timezone"]
            request.session[SESSION_KEY] = name
            messages.success(request, _("Times are now shown in %(zone)s.") % {"zone": zone_label(zone_or_none(name))})
            response = HttpResponseRedirect(next_url or reverse("taskcenter:preferences"))
            response.set_cookie(COOKIE_NAME, name, max_age=COOKIE_MAX_AGE, samesite="Lax", httponly=True)
            return response
        status = 400
    else:
        status = 200
    context = {
        "form": form,
        "zone_names": form.names(),
        "site_zone": zone_label(zone_or_none(default_zone_name())),
        "next": next_url,
    }
    return render(request, "taskcenter/preferences.html", context, status=status)
