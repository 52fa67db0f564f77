from django.http import HttpResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import CONTENT_TYPE_LATEST

from .access import refusal
from .exposition import scrape


@never_cache
@require_GET
def metrics(request):
    """The Prometheus text exposition; a plain Django view, outside the API's
    authentication and rate limits (observability/access.py says who may read it)."""
    status = refusal(request)
    if status is not None:
        response = HttpResponse(
            "metrics: a bearer token is required\n" if status == 401 else "metrics: forbidden\n",
            status=status,
            content_type="text/plain; charset=utf-8",
        )
        if status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(scrape(), content_type=CONTENT_TYPE_LATEST)
