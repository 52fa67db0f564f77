"""The dashboard: one page that reads the reporting API's JSON answers in the browser.

The page has no query path of its own: its scripts (``static/dashboard/js/``) call
``/api/sites`` and ``/api/reports/...`` with the session cookie. The view only
checks the login and hands the page the few constants it needs (the Core Web
Vitals thresholds of ``reporting.metrics``, the largest page of top pages).
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.mixins import LoginRequiredMixin
from django.contrib.auth.views import LoginView, LogoutView
from django.urls import reverse_lazy
from django.views.generic import TemplateView

from reporting.metrics import THRESHOLDS
from reporting.serializers import supported_range

SHOWN_VITALS = ("lcp_ms", "inp_ms", "cls")


class DashboardView(LoginRequiredMixin, TemplateView):
    """The dashboard at ``/``; anonymous users are sent to the login page."""

    template_name = "dashboard/index.html"

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["config"] = {
            "thresholds": {v: list(THRESHOLDS[v]) for v in SHOWN_VITALS},
            "maxPageSize": settings.METRIFLOW_MAX_PAGE_SIZE,
            "maxBuckets": settings.METRIFLOW_MAX_BUCKETS,
            "intervalHours": settings.METRIFLOW_INTERVAL_HOURS,
            # The earliest and latest bound a report takes (the ingested range).
            "supported": [bound.isoformat() for bound in supported_range()],
        }
        return context


class DashboardLoginView(LoginView):
    """Django's login with the dashboard's look; back to the dashboard afterwards
    (or to ``next``), whatever ``LOGIN_REDIRECT_URL`` says for the browsable API."""

    template_name = "dashboard/login.html"
    redirect_authenticated_user = True
    next_page = reverse_lazy("dashboard:index")


class DashboardLogoutView(LogoutView):
    next_page = reverse_lazy("dashboard:login")
