from django.apps import AppConfig


class ApiKeysConfig(AppConfig):
    name = "apikeys"
    verbose_name = "API keys"

    def ready(self) -> None:
        from django.db.models.signals import m2m_changed, post_delete, post_save

        from .authentication import forget_key
        from .models import ApiKey

        post_save.connect(forget_key, sender=ApiKey, dispatch_uid="apikeys.forget_key")
        post_delete.connect(forget_key, sender=ApiKey, dispatch_uid="apikeys.forget_key_d")
        m2m_changed.connect(
            forget_key, sender=ApiKey.sites.through, dispatch_uid="apikeys.forget_key_sites"
        )
