"""Start-up check of the metrics settings."""

from django.core import checks

from .access import allowed_networks


@checks.register(checks.Tags.security)
def metrics_allowed_ips(app_configs, **kwargs):
    try:
        allowed_networks()
    except ValueError as exc:
        return [
            checks.Error(
                f"METRIFLOW_METRICS_ALLOWED_IPS: {exc}",
                hint="A comma-separated list of addresses or networks, e.g. 10.0.0.0/8,::1",
                id="observability.E001",
            )
        ]
    return []
