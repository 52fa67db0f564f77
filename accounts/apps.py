from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Accounts and site access"

    def ready(self) -> None:
        from django.db.models.signals import post_delete, post_save

        from .models import Membership
        from .selectors import forget_sites

        post_save.connect(forget_sites, sender=Membership, dispatch_uid="accounts.forget_sites")
        post_delete.connect(forget_sites, sender=Membership, dispatch_uid="accounts.forget_sites_d")
