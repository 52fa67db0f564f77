from django.urls import include, path

from . import views

app_name = "reporting"

urlpatterns = [
    path("health", views.HealthView.as_view(), name="health"),
    path("health/live", views.LivenessView.as_view(), name="health-live"),
    path("health/ready", views.ReadinessView.as_view(), name="health-ready"),
    path("auth/register", views.RegisterView.as_view(), name="register"),
    path("auth/token", views.TokenView.as_view(), name="token"),
    path("auth/token/refresh", views.RefreshView.as_view(), name="token-refresh"),
    path("auth/logout", views.LogoutView.as_view(), name="logout"),
    path("reports/summary", views.SummaryView.as_view(), name="summary"),
    path("reports/timeseries", views.TimeseriesView.as_view(), name="timeseries"),
    path("reports/pages", views.PagesView.as_view(), name="pages"),
    path("reports/pages/<int:page_id>", views.PageView.as_view(), name="page"),
    path("", include("accounts.urls")),  # /api/sites: discovery and members
]
