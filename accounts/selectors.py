"""Reads of site access: which sites a request may read, and in which role.

``visible_site_ids`` is the one answer every report and the sites endpoints
use: ``None`` for every site (staff), otherwise the ids of the user's
memberships; a credential limited to some sites (an API key's ``site_ids``)
narrows either. A user's memberships are read once and kept in Redis
(``METRIFLOW_AUTH_USER_CACHE_SECONDS``, like the JWT's user); saving or
deleting a membership drops the entry in every API process, so a grant or a
revocation counts from the next request. Only a bulk ``QuerySet.update()``,
which sends no signal, waits for the entry to expire.

A site or page the request may not read is answered exactly as one that does
not exist (``Http404`` with the same message), so existence does not leak.
"""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import cache
from django.http import Http404

from pipeline.models import Page, Site

from .models import Membership, Role

NO_SITE = "No Site matches the given query."
NO_PAGE = "No Page matches the given query."
STAFF = "staff"  # the role shown for a staff user on a site they are no member of


def sites_key(user_id) -> str:
    return f"user-sites:v1:{user_id}"


def memberships_of(user_id: int) -> dict[int, tuple[str, str]]:
    """{site id: (host, role)} of the user's memberships, from Redis when cached."""
    key = sites_key(user_id)
    found = cache.get(key)
    if found is None:
        rows = Membership.objects.filter(user_id=user_id).values_list(
            "site_id", "site__host", "role"
        )
        found = {site_id: (host, role) for site_id, host, role in rows}
        cache.set(key, found, settings.METRIFLOW_AUTH_USER_CACHE_SECONDS)
    return found


def forget_sites(sender, instance: Membership, **kwargs) -> None:
    """post_save / post_delete of a membership: the user's cached sites are stale."""
    cache.delete(sites_key(instance.user_id))


def _is_staff(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_staff)


def visible_site_ids(user, auth=None) -> frozenset[int] | None:
    """The ids of the sites a request may read; ``None`` means every site (staff).

    ``auth`` is the request's credential (``request.auth``); when it carries
    ``site_ids`` (an API key limited to some sites) the answer is narrowed to them.
    """
    if user is None or not user.is_authenticated:
        sites: frozenset[int] | None = frozenset()
    elif user.is_staff:
        sites = None
    else:
        sites = frozenset(memberships_of(user.pk))
    limit = getattr(auth, "site_ids", None)
    if limit is not None:
        sites = frozenset(limit) if sites is None else sites & frozenset(limit)
    return sites


def _names_id(text: str) -> bool:
    return text.isascii() and text.isdigit()


def report_site_id(user, auth, site: str) -> int:
    """The id of the site ``site`` names (its host, or its id in digits), if the request
    may read it; ``Http404`` otherwise, the same for an unknown site as for another's.

    A member's sites come from the cached memberships (no query); staff look the
    site up (one indexed read).
    """
    visible = visible_site_ids(user, auth)
    if _is_staff(user):
        lookup = {"pk": int(site)} if _names_id(site) else {"host": site}
        found = Site.objects.filter(**lookup).values_list("pk", flat=True).first()
    elif user is not None and user.is_authenticated:
        found = next(
            (
                site_id
                for site_id, (host, _) in memberships_of(user.pk).items()
                if (str(site_id) if _names_id(site) else host) == site
            ),
            None,
        )
    else:
        found = None
    if found is None or (visible is not None and found not in visible):
        raise Http404(NO_SITE)
    return found


def report_page(user, auth, page_id: int) -> Page:
    """The page, if the request may read its site; ``Http404`` otherwise (the same
    answer as for a page that does not exist)."""
    page = Page.objects.filter(pk=page_id).first()
    visible = visible_site_ids(user, auth)
    if page is None or (visible is not None and page.site_id not in visible):
        raise Http404(NO_PAGE)
    return page


@dataclass(frozen=True)
class SiteAccess:
    site: Site
    role: str  # admin, viewer, or staff (staff without a membership of the site)
    staff: bool = False

    @property
    def administers(self) -> bool:
        """Whether the request may grant and revoke the site's viewers."""
        return self.staff or self.role == Role.ADMIN


def role_on(user, site_id: int) -> str | None:
    membership = memberships_of(user.pk).get(site_id) if user.is_authenticated else None
    if membership is not None:
        return membership[1]
    return STAFF if _is_staff(user) else None


def site_access(user, auth, host: str) -> SiteAccess:
    """The site of ``host`` with the request's role on it; ``Http404`` when the request
    may not see it (the same answer as for an unknown host). Staff administer every
    site; a member's role is their membership's."""
    visible = visible_site_ids(user, auth)
    site = Site.objects.filter(host=host).first()
    if site is None or (visible is not None and site.pk not in visible):
        raise Http404(NO_SITE)
    return SiteAccess(site, role_on(user, site.pk), _is_staff(user))


def visible_sites(user, auth) -> list[SiteAccess]:
    """The sites the request may see, by host, each with the request's role."""
    visible = visible_site_ids(user, auth)
    sites = Site.objects.order_by("host")
    if visible is not None:
        sites = sites.filter(pk__in=sorted(visible))
    staff = _is_staff(user)
    memberships = memberships_of(user.pk) if user.is_authenticated else {}
    return [
        SiteAccess(site, memberships[site.pk][1] if site.pk in memberships else STAFF, staff)
        for site in sites
    ]


def members_of(site: Site) -> list[Membership]:
    return list(
        Membership.objects.filter(site=site).select_related("user").order_by("user__username")
    )


def sites_with_members() -> list[tuple[Site, list[Membership]]]:
    """Every site, by host, with its memberships by username (``manage.py sites list``)."""
    members: dict[int, list[Membership]] = {}
    for membership in Membership.objects.select_related("user").order_by("user__username"):
        members.setdefault(membership.site_id, []).append(membership)
    return [(site, members.get(site.pk, [])) for site in Site.objects.order_by("host")]


def user_named(username: str):
    """The user of ``username``, or ``LookupError`` with a one-line reason."""
    user = get_user_model().objects.filter(username=username).first()
    if user is None:
        raise LookupError(f"no user named {username!r}")
    return user


def site_of_host(host: str) -> Site:
    """The site of ``host``, or ``LookupError`` with a one-line reason."""
    site = Site.objects.filter(host=host).first()
    if site is None:
        raise LookupError(f"no site with host {host!r}")
    return site


def site_answers(accesses: list[SiteAccess]) -> list[dict]:
    """What GET /api/sites says of each site: who it is, your role, what data it has."""
    from reporting.selectors import site_coverage

    coverage = site_coverage([a.site.pk for a in accesses]) if accesses else {}
    empty = {"first_hour": None, "last_hour": None, "pages": 0}
    return [
        {
            "id": a.site.pk,
            "host": a.site.host,
            "name": a.site.display_name,
            "time_zone": a.site.time_zone,
            "role": a.role,
            **coverage.get(a.site.pk, empty),
        }
        for a in accesses
    ]


def member_answers(site: Site) -> list[dict]:
    return [
        {"username": m.user.username, "role": m.role, "since": m.created_at}
        for m in members_of(site)
    ]
