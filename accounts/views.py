"""The sites endpoints: the sites a request may read, and a site admin's members.

GET /api/sites and GET /api/sites/<host> answer the sites visible to the request
(accounts.selectors.visible_site_ids); a site it cannot see is a 404, the same
as an unknown host. The members of a site are managed by its admins and staff:
a viewer of the site gets 403, anyone who cannot see it 404.
"""

from __future__ import annotations

from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.exceptions import NotFound, PermissionDenied, ValidationError
from rest_framework.response import Response
from rest_framework.views import APIView

from reporting import openapi as reports
from reporting.ratelimits import rate_limited

from . import openapi, selectors, services

RATE = {"group": "reports", "rate_setting": "METRIFLOW_RATE_REPORTS", "key": "user"}


def _administered(request, host: str) -> selectors.SiteAccess:
    access = selectors.site_access(request.user, request.auth, host)  # 404 if not visible
    if not access.administers:
        raise PermissionDenied("only an admin of this site (or staff) manages its members")
    return access


class SitesView(APIView):
    @extend_schema(
        operation_id="sites_list",
        summary="The sites you can read",
        description="Each with your role and the hours it has data for. Staff see every "
        "site. A user with no site gets an empty list (and reports of zeros).",
        tags=["sites"],
        parameters=[reports.RETRY_AFTER],
        responses={200: openapi.SitesBodySerializer, **openapi.ERRORS},
        examples=[openapi.SITES_EXAMPLE],
    )
    @rate_limited(**RATE)
    def get(self, request):
        accesses = selectors.visible_sites(request.user, request.auth)
        return Response({"sites": selectors.site_answers(accesses)})


class SiteView(APIView):
    @extend_schema(
        operation_id="sites_retrieve",
        summary="One site you can read",
        description="404 for an unknown host and for a site you cannot read alike.",
        tags=["sites"],
        parameters=[openapi.HOST_PARAMETER, reports.RETRY_AFTER],
        responses={
            200: openapi.SiteSerializer,
            404: openapi.SITE_NOT_FOUND,
            **openapi.ERRORS,
        },
        examples=[openapi.SITE_EXAMPLE],
    )
    @rate_limited(**RATE)
    def get(self, request, host: str):
        access = selectors.site_access(request.user, request.auth, host)
        return Response(selectors.site_answers([access])[0])


class MembersView(APIView):
    @extend_schema(
        operation_id="sites_members_list",
        summary="The members of a site you administer",
        description="403 for a viewer of the site, 404 for a site you cannot read.",
        tags=["sites"],
        parameters=[openapi.HOST_PARAMETER, reports.RETRY_AFTER],
        responses={
            200: openapi.MembersBodySerializer,
            403: openapi.FORBIDDEN,
            404: openapi.SITE_NOT_FOUND,
            **openapi.ERRORS,
        },
        examples=[openapi.MEMBERS_EXAMPLE],
    )
    @rate_limited(**RATE)
    def get(self, request, host: str):
        access = _administered(request, host)
        return Response({"members": selectors.member_answers(access.site)})

    @extend_schema(
        operation_id="sites_members_grant",
        summary="Grant a user access to a site you administer",
        description="A site admin grants the viewer role; staff also grant admin. 201 for a "
        "new member, 200 when an existing member's role was set. 400 for an unknown user, "
        "403 when you do not administer the site or the change needs staff (granting admin, "
        "changing an admin), 404 for a site you cannot read.",
        tags=["sites"],
        parameters=[openapi.HOST_PARAMETER, reports.RETRY_AFTER],
        request=openapi.GrantSerializer,
        responses={
            200: openapi.MemberSerializer,
            201: openapi.MemberSerializer,
            400: reports.bad_request({"username": ["no user named 'bob'"]}),
            403: openapi.FORBIDDEN,
            404: openapi.SITE_NOT_FOUND,
            **openapi.ERRORS,
        },
        examples=[openapi.GRANT_EXAMPLE],
    )
    @rate_limited(**RATE)
    def post(self, request, host: str):
        access = _administered(request, host)
        payload = openapi.GrantSerializer(data=request.data)
        payload.is_valid(raise_exception=True)
        try:
            membership, created = services.grant_by(access, **payload.validated_data)
        except services.UnknownMember as exc:
            raise ValidationError({"username": [str(exc)]}) from None
        except services.AccessDenied as exc:
            raise PermissionDenied(str(exc)) from None
        body = {
            "username": membership.user.username,
            "role": membership.role,
            "since": membership.created_at,
        }
        return Response(body, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class MemberView(APIView):
    @extend_schema(
        operation_id="sites_members_revoke",
        summary="Revoke a member's access to a site you administer",
        description="A site admin revokes viewers; staff also revoke admins. 403 when you do "
        "not administer the site or the member is an admin (staff only), 404 for a site you "
        "cannot read or a user who is not a member.",
        tags=["sites"],
        parameters=[openapi.HOST_PARAMETER, openapi.USERNAME_PARAMETER, reports.RETRY_AFTER],
        responses={
            204: OpenApiResponse(description="Revoked (no body)."),
            403: openapi.FORBIDDEN,
            404: openapi.MEMBER_NOT_FOUND,
            **openapi.ERRORS,
        },
    )
    @rate_limited(**RATE)
    def delete(self, request, host: str, username: str):
        access = _administered(request, host)
        try:
            services.revoke_by(access, username=username)
        except services.UnknownMember as exc:
            raise NotFound(str(exc)) from None
        except services.AccessDenied as exc:
            raise PermissionDenied(str(exc)) from None
        return Response(status=status.HTTP_204_NO_CONTENT)
