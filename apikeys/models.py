"""An API key of a user: stored as a hash (djangorestframework-api-key), shown once.

The key a client sends is ``<prefix>.<secret>``; only the prefix (to find the
row) and a SHA-512 of the whole key are stored. A key is always read-only. It
may be limited to some sites: ``site_ids`` is what the report scoping reads
from ``request.auth`` (None: not limited, the user's own sites apply).
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from rest_framework_api_key.models import AbstractAPIKey

from pipeline.models import Site


class ApiKey(AbstractAPIKey):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys"
    )
    sites = models.ManyToManyField(
        Site,
        blank=True,
        related_name="+",
        help_text="The sites the key is limited to (with 'limited to sites' on).",
    )
    # Whether ``sites`` limits the key. Kept apart from the sites themselves so that a
    # key whose sites were all deleted sees nothing, rather than every site.
    limited_to_sites = models.BooleanField(default=False)
    last_used_at = models.DateTimeField(
        null=True, blank=True, help_text="Updated at most once per METRIFLOW_API_KEY_USE_SECONDS."
    )

    class Meta(AbstractAPIKey.Meta):
        verbose_name = "API key"
        verbose_name_plural = "API keys"
        indexes = [models.Index(fields=["user", "-created"], name="apikey_user_created")]

    def __getstate__(self):
        # A cached key (apikeys.selectors) leaves its user out: the user is read through
        # its own cache entry, which a save of the user drops.
        state = super().__getstate__()
        state["_state"].fields_cache.pop("user", None)
        return state

    @property
    def site_ids(self) -> frozenset[int] | None:
        """The ids of the sites the key is limited to; None when it is not limited."""
        if not self.limited_to_sites:
            return None
        return frozenset(site.pk for site in self.sites.all())

    @property
    def rate_limit_key(self) -> str:
        """The key's own rate-limit bucket (reporting.ratelimits)."""
        return f"api-key:{self.prefix}"

    @property
    def expires_at(self):
        return self.expiry_date

    @property
    def limited_sites(self) -> list[Site] | None:
        """The sites the key is limited to, by host; None when it is not limited."""
        if not self.limited_to_sites:
            return None
        return sorted(self.sites.all(), key=lambda site: site.host)
