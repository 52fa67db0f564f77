from django.apps import AppConfig


class ObservabilityConfig(AppConfig):
    """Prometheus metrics: the API's requests, the pipeline's state read from the
    database at scrape time, the broker's queues, and the Celery workers' tasks."""

    name = "observability"
    verbose_name = "Observability"

    def ready(self):
        from . import checks  # noqa: F401 (registers the checks)
