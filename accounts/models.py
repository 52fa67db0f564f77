"""Who may read which site: a user is a viewer or an admin of a site.

Staff see every site without a membership. A viewer reads the site's reports;
an admin also grants and revokes the site's viewers (``/api/sites/<host>/members``).
"""

from django.conf import settings
from django.db import models

from pipeline.models import Site


class Role(models.TextChoices):
    VIEWER = "viewer", "viewer (reads the reports)"
    ADMIN = "admin", "admin (reads, and grants viewers)"


class Membership(models.Model):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    site = models.ForeignKey(Site, on_delete=models.CASCADE, related_name="memberships")
    role = models.TextField(choices=Role.choices, default=Role.VIEWER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["site__host", "user__username"]
        constraints = [
            models.UniqueConstraint(fields=["user", "site"], name="membership_one_per_user_site"),
            models.CheckConstraint(
                condition=models.Q(role__in=["viewer", "admin"]), name="membership_role"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} {self.role} of {self.site}"
