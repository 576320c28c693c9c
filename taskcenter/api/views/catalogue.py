"""The catalogue: launchable tasks, with a JSON Schema of their arguments."""

from drf_spectacular.utils import extend_schema
from rest_framework.exceptions import NotFound
from rest_framework.response import Response

from taskcenter import catalogue
from taskcenter.api.base import ApiView, problems
from taskcenter.api.serializers import CatalogueEntrySerializer


class CatalogueList(ApiView):
    @extend_schema(
        operation_id="catalogue_list", tags=["catalogue"],
        responses={200: CatalogueEntrySerializer(many=True), **problems()},
    )  # fmt: skip
    def get(self, request):
        """Every launchable task, by name; ``can_launch`` says whether you may launch it."""
        entries = catalogue.all_entries()
        return Response(CatalogueEntrySerializer(entries, many=True, context={"request": request}).data)


class CatalogueDetail(ApiView):
    @extend_schema(
        operation_id="catalogue_detail", tags=["catalogue"],
        responses={200: CatalogueEntrySerializer, **problems()},
    )  # fmt: skip
    def get(self, request, name):
        """One launchable task."""
        entry = catalogue.get_entry(name)
        if entry is None:
            raise NotFound(f"No launchable task is named {name!r}.")
        return Response(CatalogueEntrySerializer(entry, context={"request": request}).data)
