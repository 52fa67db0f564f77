"""JSON rendering with orjson: several times faster than the json module on report bodies."""

import orjson
from rest_framework.renderers import JSONRenderer

# Times in UTC with a Z; non-string keys (page ids) allowed.
JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_UTC_Z


class OrjsonRenderer(JSONRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        if data is None:
            return b""
        return orjson.dumps(data, option=JSON_OPTIONS)
