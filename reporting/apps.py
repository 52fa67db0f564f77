from django.apps import AppConfig


class ReportingConfig(AppConfig):
    name = "reporting"
    verbose_name = "Reporting"

    def ready(self) -> None:
        from django.contrib.auth import get_user_model
        from django.db.models.signals import post_delete, post_save

        from .authentication import forget_user

        user_model = get_user_model()
        post_save.connect(forget_user, sender=user_model, dispatch_uid="reporting.forget_user")
        post_delete.connect(forget_user, sender=user_model, dispatch_uid="reporting.forget_user_d")
