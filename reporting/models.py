"""Read models of the stage tables the reports are served from.

The tables are created by SQL (``sql/schema``) and filled by the pipeline's
stored procedures; these unmanaged models only read them.
"""

from django.contrib.postgres.fields import ArrayField
from django.db import models

from pipeline import catalog
from pipeline.models import Page, Site

# The model field of each kind of stored measure (pipeline/catalog.py): the one place
# that decides how the aggregate tables' columns of a kind are read.
AGGREGATE_FIELDS = {
    catalog.SUM: models.BigIntegerField,
    catalog.EXACT_SUM: models.FloatField,
    catalog.COUNT: models.IntegerField,
    catalog.HIST: lambda: ArrayField(models.BigIntegerField(), null=True),
}
# page_hour holds one hour's traffic values, NULL where the hour has no GA record.
PAGE_HOUR_FIELDS = {catalog.SUM: models.IntegerField, catalog.EXACT_SUM: models.FloatField}


def _page_hour_fields() -> dict[str, models.Field]:
    """Traffic, then per strategy the score and each vital (NULL without a PSI record)."""
    fields = {m.name: PAGE_HOUR_FIELDS[m.kind](null=True) for m in catalog.TRAFFIC}
    for column in catalog.page_hour_performance_columns():
        fields[column] = models.FloatField(null=True)
    return fields


def _aggregate_fields() -> dict[str, models.Field]:
    return {m.name: AGGREGATE_FIELDS[m.kind]() for m in catalog.aggregate_measures()}


class PageHour(models.Model):
    """The page stage: one row per (page, hour), GA and PSI fully outer-joined."""

    pk = models.CompositePrimaryKey("hour", "page")
    hour = models.DateTimeField()
    page = models.ForeignKey(Page, on_delete=models.DO_NOTHING, db_constraint=False)
    site = models.ForeignKey(Site, on_delete=models.DO_NOTHING, db_constraint=False)

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

    class Meta:
        abstract = True
        managed = False


# The measure columns are the catalog's (pipeline/catalog.py), in table order, so they
# are added in a loop rather than spelled out; concrete tables inherit them from the
# abstract shape.
for _name, _field in _page_hour_fields().items():
    PageHour.add_to_class(_name, _field)
for _name, _field in _aggregate_fields().items():
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
