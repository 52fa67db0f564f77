from django.contrib import admin
from django.http import HttpResponsePermanentRedirect
from django.templatetags.static import static
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView


def favicon(request):
    """Browsers ask every host for /favicon.ico: the project's icon, by its hashed name."""
    return HttpResponsePermanentRedirect(static("metriflow/favicon.svg"))


urlpatterns = [
    path("favicon.ico", favicon),
    # Prometheus metrics, for a bearer token or allowed addresses (observability/).
    path("", include("observability.urls")),
    path("admin/", admin.site.urls),
    path("api/", include("reporting.urls")),
    path("api/", include("apikeys.urls")),  # /api/keys
    # Log in and out of the browsable API (a session; the reports accept it beside JWT).
    path("api/auth/browser/", include("rest_framework.urls")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="redoc"),
    path("swagger/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger"),
    # The dashboard at / (and its login page), reading the reports above.
    path("", include("dashboard.urls")),
]
