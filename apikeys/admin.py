"""API keys in the admin: listed with their user, created with the key shown once
(djangorestframework-api-key's admin), revoked by a checkbox or an action."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from rest_framework_api_key.admin import APIKeyModelAdmin
from rest_framework_api_key.models import APIKey

from . import services
from .models import ApiKey

# The library's own key model is not used: Metriflow's keys belong to users.
if admin.site.is_registered(APIKey):
    admin.site.unregister(APIKey)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "user", "sites", "expiry_date", "revoked"]
        help_texts = {"sites": "Limit the key to these sites; none chosen: not limited."}

    def clean(self):
        cleaned = super().clean()
        if "sites" in cleaned and (self.instance._state.adding or "sites" in self.changed_data):
            self.instance.limited_to_sites = bool(cleaned["sites"])
        return cleaned


@admin.register(ApiKey)
class ApiKeyAdmin(APIKeyModelAdmin):
    form = ApiKeyForm
    list_display = (
        "prefix",
        "name",
        "user",
        "site_list",
        "created",
        "expiry_date",
        "last_used_at",
        "_has_expired",
        "revoked",
    )
    list_filter = ("revoked", "created", ("user", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("user",)
    search_fields = ("name", "prefix", "user__username")
    autocomplete_fields = ("user",)
    filter_horizontal = ("sites",)
    actions = ["revoke"]

    def get_queryset(self, request):
        return super().get_queryset(request).prefetch_related("sites")

    def get_readonly_fields(self, request, obj=None):
        fields = (*super().get_readonly_fields(request, obj), "last_used_at")
        if obj is not None:  # a key stays its user's
            fields = (*fields, "user")
            if obj.revoked:
                fields = (*fields, "sites")
        return fields

    @admin.display(description="Sites")
    def site_list(self, key: ApiKey) -> str:
        sites = key.limited_sites
        return "all of the user's" if sites is None else ", ".join(s.host for s in sites) or "-"

    @admin.action(description="Revoke the selected API keys")
    def revoke(self, request, queryset):
        keys = [key for key in queryset if not key.revoked]
        for key in keys:
            services.revoke_key(user=key.user, prefix=key.prefix)
        self.message_user(request, f"{len(keys)} API key(s) revoked.", messages.SUCCESS)
