"""Memberships in the admin: an inline on each site (its members) and on each user
(their sites). The Site admin of ``pipeline`` and Django's User admin are
registered again with the inline."""

from django.contrib import admin
from django.contrib.auth import get_user_model
from django.contrib.auth.admin import UserAdmin

from pipeline.admin import SiteAdmin
from pipeline.models import Site

from .models import Membership


class SiteMembersInline(admin.TabularInline):
    model = Membership
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)
    extra = 0
    verbose_name = "member"
    verbose_name_plural = "members (viewers and admins; staff see every site)"


class UserSitesInline(admin.TabularInline):
    model = Membership
    fields = ("site", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("site",)
    extra = 0
    verbose_name = "site"
    verbose_name_plural = "sites (staff see every site)"


admin.site.unregister(Site)


@admin.register(Site)
class SiteWithMembersAdmin(SiteAdmin):
    inlines = [SiteMembersInline]


User = get_user_model()
admin.site.unregister(User)


@admin.register(User)
class UserWithSitesAdmin(UserAdmin):
    inlines = [*UserAdmin.inlines, UserSitesInline]
