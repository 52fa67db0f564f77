"""Read models of the stage tables the reports are served from.

The tables are created by SQL (``sql/schema``) and filled by the pipeline's
stored procedures; these unmanaged models only read them.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from pipeline.models import Page, Site

STRATEGIES = ("mobile", "desktop")
VITALS = ("lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls")


def _page_hour_performance_fields() -> dict[str, models.Field]:
    fields: dict[str, models.Field] = {}
    for strategy in STRATEGIES:
        fields[f"{strategy}_score"] = models.FloatField(null=True)
        for vital in VITALS:
            fields[f"{strategy}_{vital}"] = models.FloatField(null=True)
    return fields


def _aggregate_performance_fields() -> dict[str, models.Field]:
    fields: dict[str, models.Field] = {}
    for strategy in STRATEGIES:
        fields[f"{strategy}_samples"] = models.IntegerField()
        fields[f"{strategy}_score_sum"] = models.FloatField()
        for vital in VITALS:
            fields[f"{strategy}_{vital}_n"] = models.IntegerField()
            fields[f"{strategy}_{vital}_good"] = models.IntegerField()
            fields[f"{strategy}_{vital}_poor"] = models.IntegerField()
            fields[f"{strategy}_{vital}_hist"] = ArrayField(models.BigIntegerField(), null=True)
    return fields


class PageHour(models.Model):
    """The page stage: one row per (page, hour), GA and PSI fully outer-joined."""

    pk = models.CompositePrimaryKey("hour", "page")
    hour = models.DateTimeField()
    page = models.ForeignKey(Page, on_delete=models.DO_NOTHING, db_constraint=False)
    site = models.ForeignKey(Site, on_delete=models.DO_NOTHING, db_constraint=False)
    users = models.IntegerField(null=True)
    sessions = models.IntegerField(null=True)
    views = models.IntegerField(null=True)
    bounces = models.IntegerField(null=True)
    engagement_seconds = models.FloatField(null=True)

    class Meta:
        managed = False
        db_table = "page_hour"

    def __str__(self) -> str:
        return f"page {self.page_id} @ {self.hour:%Y-%m-%d %H:00}"


class Measures(models.Model):
    """Columns every aggregate table shares: the period, the site, sums, counts, histograms."""

    period_start = models.DateTimeField()
    site = models.ForeignKey(
        Site, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )
    traffic_hours = models.IntegerField()
    users = models.BigIntegerField()
    sessions = models.BigIntegerField()
    views = models.BigIntegerField()
    bounces = models.BigIntegerField()
    engagement_seconds = models.FloatField()

    class Meta:
        abstract = True
        managed = False


# The 10 (page hour) and 44 (aggregate) performance columns follow one
# pattern per strategy and vital, so they are added in a loop rather than
# spelled out; concrete tables inherit them from the abstract shape.
for _name, _field in _page_hour_performance_fields().items():
    PageHour.add_to_class(_name, _field)
for _name, _field in _aggregate_performance_fields().items():
    Measures.add_to_class(_name, _field)


class Aggregate(Measures):
    """Per page: the interval, daily, monthly and yearly tables."""

    pk = models.CompositePrimaryKey("period_start", "page")
    page = models.ForeignKey(
        Page, on_delete=models.DO_NOTHING, db_constraint=False, related_name="+"
    )

    class Meta(Measures.Meta):
        abstract = True

    def __str__(self) -> str:
        return f"page {self.page_id} @ {self.period_start:%Y-%m-%d %H:%M}"


class SiteDailyAggregate(Measures):
    """All pages of a site per day: what reports without a page filter read for days."""

    pk = models.CompositePrimaryKey("period_start", "site")

    class Meta(Measures.Meta):
        db_table = "agg_site_daily"

    def __str__(self) -> str:
        return f"site {self.site_id} @ {self.period_start:%Y-%m-%d}"


class IntervalAggregate(Aggregate):
    class Meta(Aggregate.Meta):
        db_table = "agg_interval"


class DailyAggregate(Aggregate):
    class Meta(Aggregate.Meta):
        db_table = "agg_daily"


class MonthlyAggregate(Aggregate):
    class Meta(Aggregate.Meta):
        db_table = "agg_monthly"


class YearlyAggregate(Aggregate):
    class Meta(Aggregate.Meta):
        db_table = "agg_yearly"
