from django.apps import AppConfig


class MetriflowConfig(AppConfig):
    name = "metriflow"
    verbose_name = "Metriflow"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the start-up checks)
