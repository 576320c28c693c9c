"""Dead letters: the list with filters, one letter, replay (edited or not) and discard, one or in bulk."""

from urllib.parse import urlencode

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_http_methods, require_POST

from taskcenter import catalogue, permissions
from taskcenter.forms.deadletters import DeadLetterActionForm, DeadLetterFilterForm, ReplayForm
from taskcenter.models import DeadLetter, RunSource
from taskcenter.secret_arguments import MASK
from taskcenter.selectors.deadletters import (
    deadletter_by_id,
    deadletters_for_action,
    deadletters_page,
    exception_types,
)
from taskcenter.selectors.runs import runs_by_task_ids
from taskcenter.services import deadletters
from taskcenter.views.common import allowed, perform_action, staff_required, submit

MANAGE_REFUSED = gettext_lazy("You need the 'replay and discard dead letters' permission.")


def _list_context(request, form, page):
    params = form.data.copy() if form.is_bound else {}
    for key in ("before", "after"):
        params.pop(key, None)
    letters = page.letters if page else []
    known_runs = {run.task_id for run in runs_by_task_ids([letter.task_id for letter in letters if letter.task_id])}
    return {
        "form": form,
        "page": page,
        "known_runs": known_runs,
        "filter_query": params.urlencode() if params else "",
        "filter_fields": form.filters().as_query() if form.is_bound and form.is_valid() else {"status": "open"},
        "task_names": [entry.name for entry in catalogue.all_entries()],
        "exception_types": exception_types(),
        "can_manage": permissions.can_manage_deadletters(request.user),
    }


@staff_required
def deadletter_list(request):
    form = DeadLetterFilterForm(request.GET or None)
    if form.is_bound and not form.is_valid():
        return render(request, "taskcenter/deadletter_list.html", _list_context(request, form, None), status=400)
    data = form.cleaned_data if form.is_bound else {}
    page = deadletters_page(form.filters(), before=data.get("before"), after=data.get("after"))
    return render(request, "taskcenter/deadletter_list.html", _list_context(request, form, page))


def _letter_or_404(pk: int) -> DeadLetter:
    letter = deadletter_by_id(pk)
    if letter is None:
        raise Http404(_("No dead letter %(id)s.") % {"id": pk})
    return letter


@staff_required
def deadletter_detail(request, pk):
    letter = _letter_or_404(pk)
    run_known = bool(letter.task_id and runs_by_task_ids([letter.task_id]))
    return render(
        request,
        "taskcenter/deadletter_detail.html",
        {"letter": letter, "run_known": run_known, "can_manage": permissions.can_manage_deadletters(request.user)},
    )


@allowed(permissions.can_manage_deadletters, MANAGE_REFUSED)
@require_http_methods(["GET", "POST"])
def deadletter_replay(request, pk):
    """Replay one dead letter with its arguments, edited or not."""
    letter = _letter_or_404(pk)
    if not permissions.can_launch(request.user, letter.task_name):
        raise PermissionDenied(_("You may not launch %(task)s.") % {"task": letter.task_name})
    form = ReplayForm(request.POST or None, initial={"args": letter.args, "kwargs": letter.kwargs})
    new_run, status = submit(
        request,
        form,
        lambda data: deadletters.deadletter_replay(
            letter=letter, actor=request.user, args=data["args"], kwargs=data["kwargs"], source=RunSource.WEB
        ),
    )
    if new_run is not None:
        messages.success(
            request, _("Replayed %(task)s; the new run is linked to the original.") % {"task": letter.task_name}
        )
        return redirect("taskcenter:run_detail", task_id=new_run.task_id)
    entry = catalogue.get_entry(letter.task_name)
    context = {"letter": letter, "form": form, "secret": entry.secret if entry else (), "mask": MASK}
    return render(request, "taskcenter/deadletter_replay.html", context, status=status)


@allowed(permissions.can_manage_deadletters, MANAGE_REFUSED)
@require_POST
def deadletter_discard(request, pk):
    letter = _letter_or_404(pk)
    url = reverse("taskcenter:deadletter_detail", args=[letter.pk])
    return perform_action(
        request,
        lambda: deadletters.deadletter_discard(letter=letter, actor=request.user),
        page=lambda request, status: redirect(url) if status < 400 else _detail_again(request, letter, status),
        page_url=url,
        success=_("Discarded dead letter %(id)s.") % {"id": letter.pk},
    )


def _detail_again(request, letter, status):
    return render(
        request,
        "taskcenter/deadletter_detail.html",
        {"letter": letter, "run_known": False, "can_manage": True},
        status=status,
    )


@allowed(permissions.can_manage_deadletters, MANAGE_REFUSED)
@require_POST
def deadletter_bulk(request):
    """Replay or discard the selected letters or every unresolved one matching the filter.

    The first POST shows a confirmation with the count; the second, with ``confirm``, acts.
    """
    form = DeadLetterActionForm(request.POST)
    filter_form = DeadLetterFilterForm(request.POST)
    back = reverse("taskcenter:deadletter_list")
    if not form.is_valid() or not filter_form.is_valid():
        problems = [e for errs in (*form.errors.values(), *filter_form.errors.values()) for e in errs]
        messages.error(request, _("Nothing done: %(problems)s") % {"problems": "; ".join(problems)})
        return redirect(back)
    filters = filter_form.filters()
    data = form.cleaned_data
    limit = settings.TASKCENTER_BULK_RETRY_LIMIT
    letters = deadletters_for_action(
        ids=data["ids"], filters=filters if data["scope"] == "filter" else None, limit=limit + 1
    )
    too_many = len(letters) > limit
    query = urlencode({k: v for k, v in filters.as_query().items() if v})
    if not data["confirm"] or too_many:
        return render(
            request,
            "taskcenter/deadletter_confirm.html",
            {
                "letters": letters[:limit],
                "count": len(letters[:limit]),
                "too_many": too_many,
                "limit": limit,
                "form": form,
                "filter_fields": filters.as_query(),
            },
            status=400 if too_many else 200,
        )
    if data["action"] == "discard":
        result = deadletters.deadletters_discard_bulk(letters=letters, actor=request.user)
        refused = len(result.refused)
        done = _("Discarded %(done)d dead letter(s); %(refused)d refused.")
    else:
        allowed_letters = [x for x in letters if permissions.can_launch(request.user, x.task_name)]
        result = deadletters.deadletters_replay_bulk(letters=allowed_letters, actor=request.user, source=RunSource.WEB)
        refused = len(result.refused) + len(letters) - len(allowed_letters)
        done = _("Replayed %(done)d dead letter(s); %(refused)d refused.")
    report = messages.success if result.done or not refused else messages.error
    report(request, done % {"done": len(result.done), "refused": refused})
    for letter, reason in result.refused[:10]:
        messages.warning(request, f"{letter.pk} ({letter.task_name}): {reason}")
    return redirect(back + ("?" + query if query else ""))
