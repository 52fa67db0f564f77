import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("pipeline", "0017_site_profile"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name="Membership",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                (
                    "role",
                    models.TextField(
                        choices=[
                            ("viewer", "viewer (reads the reports)"),
                            ("admin", "admin (reads, and grants viewers)"),
                        ],
                        default="viewer",
                    ),
                ),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                (
                    "site",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to="pipeline.site",
                    ),
                ),
                (
                    "user",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="memberships",
                        to=settings.AUTH_USER_MODEL,
                    ),
                ),
            ],
            options={
                "ordering": ["site__host", "user__username"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("user", "site"), name="membership_one_per_user_site"
                    ),
                    models.CheckConstraint(
                        condition=models.Q(("role__in", ["viewer", "admin"])),
                        name="membership_role",
                    ),
                ],
            },
        ),
    ]
