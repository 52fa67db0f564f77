"""Metriflow's own middleware."""

from django.conf import settings


class ContentSecurityPolicyMiddleware:
    """Sends ``Content-Security-Policy`` (``METRIFLOW_CSP``) with every answer that
    has none: a page of Metriflow's loads scripts, styles, images, fonts and data
    from Metriflow only, so a page that would reach another host (a CDN's script,
    a web font, a vendor's logo inside a bundle) is stopped by the browser."""

    def __init__(self, get_response):
        self.get_response = get_response
        self.policy = settings.METRIFLOW_CSP

    def __call__(self, request):
        response = self.get_response(request)
        if self.policy:
            response.headers.setdefault("Content-Security-Policy", self.policy)
        return response
