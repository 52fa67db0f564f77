"""Renderers of the reporting API.

JSON with orjson: several times faster than the json module on report bodies.
A cached answer arrives as an ``orjson.Fragment`` and is copied as it is. When
an indent is asked for (``Accept: application/json; indent=4``, or the
browsable API, which asks for 4), the body is decoded and written indented
instead; the fast path of a plain JSON request is unchanged.

The browsable API shows each report with a GET form of its query parameters,
built from the view's parameter serializer (``query_serializer``).
"""

from __future__ import annotations

import json
import re

import orjson
from django.template.loader import render_to_string
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe
from rest_framework import serializers
from rest_framework.renderers import BrowsableAPIRenderer, JSONRenderer

# A Markdown code span of a help text (`previous`), as the OpenAPI documents write them.
CODE_SPAN = re.compile(r"`([^`]+)`")
# Times in UTC with a Z; non-string keys (page ids) allowed.
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


class OrjsonRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        body = orjson.dumps(data, option=JSON_OPTIONS)
        indent = self.get_indent(accepted_media_type, renderer_context or {})
        if not indent:
            return body
        # Decoded from orjson's own output: fragments, times and page-id keys as sent.
        return json.dumps(orjson.loads(body), indent=indent, ensure_ascii=False).encode()


class ReportBrowsableAPIRenderer(BrowsableAPIRenderer):
    """The browsable API, with a form of the report's query parameters above the answer."""

    template = "reporting/api.html"

    def get_context(self, data, accepted_media_type, renderer_context):
        context = super().get_context(data, accepted_media_type, renderer_context)
        view, request = renderer_context["view"], renderer_context["request"]
        context["query_form"] = self.get_query_form(view, request)
        return context

    def get_query_form(self, view, request) -> str | None:
        serializer_class = getattr(view, "query_serializer", None)
        if serializer_class is None:
            return None
        fields = [
            _form_field(name, field, request.query_params.get(name))
            for name, field in serializer_class().get_fields().items()
        ]
        return render_to_string(
            "reporting/query_form.html",
            {"fields": fields, "action": request.path},
            request=request._request,
        )


def _form_field(name: str, field: serializers.Field, given: str | None) -> dict:
    """What the form template needs to render one query parameter."""
    value = given if given is not None else field.default
    out = {
        "name": name,
        "id": f"id_{name}",
        "label": field.label or name.replace("_", " ").capitalize(),
        "help_text": help_html(field.help_text or ""),
        "required": field.required,
        "value": "" if value is serializers.empty or value is None else str(value),
        "placeholder": "",
        "input_type": "text",
        "choices": None,
        "min": None,
        "max": None,
    }
    if isinstance(field, serializers.ChoiceField):
        out["input_type"] = "select"
        out["choices"] = list(field.choices)
    elif isinstance(field, serializers.IntegerField):
        out["input_type"] = "number"
        out["min"], out["max"] = field.min_value, field.max_value
    elif name in ("from", "to"):
        out["placeholder"] = "2025-01-01T00:00:00Z"
    return out


def help_html(text: str) -> SafeString:
    """A field's help text as HTML: escaped, its Markdown code spans as ``<code>``."""
    return mark_safe(CODE_SPAN.sub(r"<code>\1</code>", escape(text)))
