"""Workers page (being written)."""

from django.http import HttpResponse

from taskcenter.views.common import staff_required


@staff_required
def placeholder(request, *args, **kwargs):
    return HttpResponse("Not yet available.", status=501)


worker_list = worker_pool = rate_limit = placeholder
