"""Audit trail page (being written)."""

from django.http import HttpResponse

from taskcenter.views.common import staff_required


@staff_required
def audit_list(request):
    return HttpResponse("Not yet available.", status=501)
