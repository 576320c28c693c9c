"""The API tokens page: a user creates (shown once), lists and revokes their own tokens."""

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.views.decorators.http import require_http_methods, require_POST

from taskcenter.forms.api_tokens import TokenForm
from taskcenter.selectors.api_tokens import token_of, tokens_of
from taskcenter.services.api_tokens import token_create, token_revoke
from taskcenter.services.errors import ServiceError
from taskcenter.views.common import submit


@login_required
@require_http_methods(["GET", "POST"])
def token_list(request):
    """List the user's tokens; a POST creates one and shows its secret on this answer only."""
    form = TokenForm(request.POST or None)
    created, status = submit(
        request,
        form,
        lambda data: token_create(
            user=request.user, name=data["name"], expires_at=data.get("expires_at"), actor=request.user
        ),
    )
    if created is not None:
        token, plain = created
        form = TokenForm()
        context = {"new_token": token, "plain": plain}
    else:
        context = {}
    context |= {"form": form, "tokens": tokens_of(request.user)}
    response = render(request, "taskcenter/api_tokens.html", context, status=status)
    response["Cache-Control"] = "no-store"  # the page may hold a secret
    return response


@login_required
@require_POST
def token_revoke_view(request, pk):
    token = token_of(request.user, pk)
    if token is None:
        raise Http404(_("No such token of yours."))
    try:
        token_revoke(token=token, actor=request.user)
    except ServiceError as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, _("Revoked the API token %(name)s.") % {"name": repr(token.name)})
    return redirect("taskcenter:api_tokens")
