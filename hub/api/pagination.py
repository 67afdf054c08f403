from __future__ import annotations

from django.conf import settings
from rest_framework.pagination import CursorPagination
from rest_framework.response import Response


class HubCursorPagination(CursorPagination):
    """Cursor pages: stable under inserts, no COUNT(*) on big tables. `?page_size=` up to the cap."""

    ordering = "-created_at"
    page_size_query_param = "page_size"

    @property
    def max_page_size(self) -> int:
        return settings.API_MAX_PAGE_SIZE

    def get_paginated_response(self, data):
        return Response({"results": data, "next": self.get_next_link(), "previous": self.get_previous_link()})

    def get_paginated_response_schema(self, schema):
        return {
            "type": "object",
            "required": ["results", "next"],
            "properties": {
                "results": schema,
                "next": {"type": "string", "format": "uri", "nullable": True},
                "previous": {"type": "string", "format": "uri", "nullable": True},
            },
        }
