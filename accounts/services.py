"""Writes of site access: granting and revoking memberships.

``grant`` and ``revoke`` are what staff do (``manage.py sites``, the admin);
``grant_by`` and ``revoke_by`` are the same asked by a request through the
API, where a site's admin manages its viewers: a site admin grants and revokes
the viewer role only, and cannot change or remove another admin (staff can).
Saving or deleting a membership drops the user's cached sites
(``selectors.forget_sites``).
"""

from __future__ import annotations

from django.db import transaction

from pipeline.models import Site

from .models import Membership, Role
from .selectors import SiteAccess, user_named


class AccessDenied(PermissionError):
    """The request sees the site but may not make this change (403)."""


class UnknownMember(LookupError):
    """No such user, or no membership of the user on the site."""


def grant(*, user, site: Site, role: str) -> Membership:
    """Makes ``user`` a ``role`` of ``site`` (a membership's role is replaced)."""
    if role not in Role.values:
        raise ValueError(f"not a role: {role!r} (one of {', '.join(Role.values)})")
    membership, _ = Membership.objects.update_or_create(
        user=user, site=site, defaults={"role": role}
    )
    return membership


def revoke(*, user, site: Site) -> bool:
    """Removes ``user``'s membership of ``site``; whether there was one."""
    memberships = Membership.objects.filter(user=user, site=site)
    found = memberships.exists()
    memberships.delete()  # per-row signals: the cached sites are dropped
    return found


def _check_may_manage(access: SiteAccess, target_role: str | None, new_role: str | None) -> None:
    if not access.administers:
        raise AccessDenied("only an admin of this site (or staff) manages its members")
    if access.staff:
        return
    if new_role == Role.ADMIN:
        raise AccessDenied("a site admin grants the viewer role; only staff grant admin")
    if target_role == Role.ADMIN:
        raise AccessDenied("this user is an admin of the site; only staff change or remove admins")


@transaction.atomic
def grant_by(access: SiteAccess, *, username: str, role: str) -> tuple[Membership, bool]:
    """``username`` becomes ``role`` of the site, asked by a request with ``access``;
    the membership and whether it is new."""
    try:
        user = user_named(username)
    except LookupError as exc:
        raise UnknownMember(str(exc)) from None
    current = Membership.objects.filter(user=user, site=access.site).first()
    _check_may_manage(access, current.role if current else None, role)
    return grant(user=user, site=access.site, role=role), current is None


@transaction.atomic
def revoke_by(access: SiteAccess, *, username: str) -> None:
    """``username`` loses access to the site, asked by a request with ``access``."""
    if not access.administers:
        _check_may_manage(access, None, None)
    membership = (
        Membership.objects.filter(site=access.site, user__username=username)
        .select_related("user")
        .first()
    )
    if membership is None:
        raise UnknownMember(f"{username!r} is not a member of {access.site.host}")
    _check_may_manage(access, membership.role, None)
    membership.delete()
