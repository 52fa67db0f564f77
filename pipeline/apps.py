from django.apps import AppConfig
from django.db.models.signals import post_migrate, pre_migrate


def _catalog_functions(sender, using, plan=None, **kwargs) -> None:
    """Before migrations that build the stage schema: the catalog's SQL functions,
    which the stage SQL calls (pipeline/reference.py)."""
    if any(not backwards for _migration, backwards in plan or ()):
        from .reference import prepare

        prepare(using)


def _catalog_sync(sender, using, **kwargs) -> None:
    """After every migrate: the database's copy of pipeline/catalog.py."""
    from .reference import sync

    sync(using)


def _record_data_settings(sender, **kwargs) -> None:
    """After every migrate: the settings that shape data, where not yet recorded
    (pipeline/datasettings.py)."""
    from .datasettings import record_at_migrate

    record_at_migrate(**kwargs)


class PipelineConfig(AppConfig):
    name = "pipeline"
    verbose_name = "Pipeline"

    def ready(self) -> None:
        pre_migrate.connect(_catalog_functions, sender=self, dispatch_uid="pipeline.catalog")
        post_migrate.connect(_catalog_sync, sender=self, dispatch_uid="pipeline.catalog")
        post_migrate.connect(_record_data_settings, sender=self, dispatch_uid="pipeline.data")
