"""Queues page (being written)."""

from django.http import HttpResponse

from taskcenter.views.common import staff_required


@staff_required
def placeholder(request, *args, **kwargs):
    return HttpResponse("Not yet available.", status=501)


queue_list = queue_pause = queue_resume = queue_purge = placeholder
