"""The OpenAPI description of the sites endpoints' answers (drf-spectacular): these
serializers only describe what ``views.py`` returns, as ``reporting/openapi.py``
does for the reports."""

from __future__ import annotations

from drf_spectacular.utils import OpenApiExample, OpenApiParameter
from rest_framework import serializers

from reporting import openapi as reports

from .models import Role
from .selectors import STAFF

ROLES = [*Role.values, STAFF]


class SiteSerializer(serializers.Serializer):
    id = serializers.IntegerField(help_text="The site's id (`site=<id>` in the reports).")
    host = serializers.CharField(help_text="The contract's site (`site=<host>` in the reports).")
    name = serializers.CharField(help_text="Display name; the host when none was given.")
    time_zone = serializers.CharField(help_text="IANA name. Stored; reports stay in UTC.")
    role = serializers.ChoiceField(
        choices=ROLES,
        help_text="Your role: `admin` (reads, and manages viewers), `viewer`, or `staff` "
        "(staff without a membership of the site).",
    )
    first_hour = serializers.DateTimeField(
        allow_null=True, help_text="First hour with data (UTC); null before any data."
    )
    last_hour = serializers.DateTimeField(
        allow_null=True, help_text="Last hour with data (UTC); null before any data."
    )
    pages = serializers.IntegerField(help_text="Pages of the site.")


class SitesBodySerializer(serializers.Serializer):
    sites = SiteSerializer(many=True, help_text="By host.")


class MemberSerializer(serializers.Serializer):
    username = serializers.CharField()
    role = serializers.ChoiceField(choices=Role.values)
    since = serializers.DateTimeField(help_text="When the membership was granted or changed.")


class MembersBodySerializer(serializers.Serializer):
    members = MemberSerializer(many=True, help_text="By username.")


class GrantSerializer(serializers.Serializer):
    """What POST /api/sites/<host>/members takes (and validates)."""

    username = serializers.CharField(max_length=150, help_text="An existing user.")
    role = serializers.ChoiceField(
        choices=Role.values,
        default=Role.VIEWER,
        help_text="A site admin grants `viewer`; only staff grant `admin`.",
    )


HOST_PARAMETER = OpenApiParameter(
    "host",
    {"type": "string", "minLength": 1, "maxLength": 253, "pattern": "^[^/]+$"},
    OpenApiParameter.PATH,
    description="The site's host (`host` in GET /api/sites).",
)
USERNAME_PARAMETER = OpenApiParameter(
    "username",
    {"type": "string", "minLength": 1, "maxLength": 150, "pattern": "^[^/]+$"},
    OpenApiParameter.PATH,
    description="The member's username.",
)
FORBIDDEN = reports._error(
    "You can read this site but do not administer it (or the change needs staff).",
    reports.DetailSerializer,
    {"detail": "only an admin of this site (or staff) manages its members"},
)
SITE_NOT_FOUND = reports._error(
    "No such site, or one you cannot read (the same answer).",
    reports.DetailSerializer,
    {"detail": "No Site matches the given query."},
)
MEMBER_NOT_FOUND = reports._error(
    "No such site or member (a site you cannot read answers the same).",
    reports.DetailSerializer,
    {"detail": "'ann' is not a member of shop.example.com"},
)
ERRORS = {401: reports.UNAUTHORIZED, 429: reports.TOO_MANY}

EXAMPLE_SITE = {
    "id": 2,
    "host": "shop.example.com",
    "name": "Shop",
    "time_zone": "Europe/Paris",
    "role": "admin",
    "first_hour": "2024-12-30T00:00:00Z",
    "last_hour": "2025-01-07T23:00:00Z",
    "pages": 12,
}
SITES_EXAMPLE = reports.example("Your sites", {"sites": [EXAMPLE_SITE]})
SITE_EXAMPLE = reports.example("One site", EXAMPLE_SITE)
MEMBERS_EXAMPLE = reports.example(
    "Members",
    {
        "members": [
            {"username": "ann", "role": "admin", "since": "2025-01-02T09:00:00Z"},
            {"username": "bob", "role": "viewer", "since": "2025-01-03T10:30:00Z"},
        ]
    },
)
GRANT_EXAMPLE = OpenApiExample(
    "Grant a viewer", value={"username": "bob", "role": "viewer"}, request_only=True
)
