"""factory-boy factories of the objects tests create: users, staff, sites, pages,
memberships.

Sites are rows of the pipeline's (unmanaged) ``site`` table, inserted through the
ORM as ingestion would leave them (``created_at`` from the database's default).
"""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model
from django.utils import timezone

from accounts.models import Membership, Role
from pipeline.models import Page, Site

PASSWORD = "correct-Horse-battery-9"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    password = factory.django.Password(PASSWORD)
    is_staff = False


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True


class SiteFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Site
        django_get_or_create = ("host",)

    host = factory.Sequence(lambda n: f"site{n}.example.com")


class PageFactory(factory.django.DjangoModelFactory):
    """A canonical page of a site, as ingestion registers it."""

    class Meta:
        model = Page

    site = factory.SubFactory(SiteFactory)
    path = factory.Sequence(lambda n: f"/page-{n}")
    url = factory.LazyAttribute(lambda page: f"https://{page.site.host}{page.path}")
    created_at = factory.LazyFunction(timezone.now)


class MembershipFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Membership

    user = factory.SubFactory(UserFactory)
    site = factory.SubFactory(SiteFactory)
    role = Role.VIEWER


def member_of_every_site(user, role: str = Role.VIEWER) -> list[Membership]:
    """``user`` becomes ``role`` of every site there is (a reader of all the data)."""
    return [MembershipFactory(user=user, site=site, role=role) for site in Site.objects.all()]


class ApiKeyFactory(factory.django.DjangoModelFactory):
    """An API key made as the API makes one (stored hashed); its secret is on ``.secret``.
    ``sites=[...]`` limits it to those sites."""

    class Meta:
        model = "apikeys.ApiKey"

    user = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"key {n}")

    @classmethod
    def _create(cls, model_class, *args, sites=None, **kwargs):
        key, secret = model_class.objects.create_key(**kwargs, limited_to_sites=sites is not None)
        if sites:
            key.sites.set(sites)
        key.secret = secret
        return key
