"""Reads for the reporting API, through the ORM over the pre-aggregated tables.

A range is cut into the coarsest whole units inside it (``ranges.py``); each
run of units is read from its table with one aggregate query (sums, counts,
merged histograms), and the partials are added up (``metrics.py``). Composed
answers are cached in Redis together with the data version they were computed
under, and served only while it is current, so an answer is never served after
the pipeline changed a window it covers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime

import orjson
from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import EmptyResultSet
from django.db import connection, transaction
from django.db.models import Count, F, Max, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce
from psycopg import sql

from pipeline import dataversion
from pipeline.models import IngestBatch, Page, PipelineDirty, PipelineLedger, Site

from . import cursors
from .metrics import STRATEGIES, THRESHOLDS, TRAFFIC, VITALS, Partial, metrics_of
from .models import (
    DailyAggregate,
    IntervalAggregate,
    MonthlyAggregate,
    PageHour,
    SiteDailyAggregate,
    YearlyAggregate,
)
from .ranges import Piece, decompose, unit_end, unit_start
from .renderers import JSON_OPTIONS

LEVEL_MODELS = {
    "year": YearlyAggregate,
    "month": MonthlyAggregate,
    "day": DailyAggregate,
    "interval": IntervalAggregate,
}
# The longest the health check waits for PostgreSQL to answer ``SELECT 1``.
HEALTH_TIMEOUT_MS = 2000
GRANULARITY_LEVEL = {
    "hour": "hour",
    "interval": "interval",
    "day": "day",
    "month": "month",
    "year": "year",
}


@dataclass(frozen=True)
class Filters:
    site: int | None = None
    page: int | None = None
    path_prefix: str | None = None
    # The sites the request may read (accounts.selectors.visible_site_ids); None: every
    # site. Part of the cache key: requests that may read different sites never share
    # an answer.
    sites: frozenset[int] | None = None

    def q(self) -> Q:
        q = Q()
        if self.sites is not None:
            q &= Q(site_id__in=sorted(self.sites))  # empty: no rows
        if self.site is not None:
            q &= Q(site_id=self.site)
        if self.page is not None:
            q &= Q(page_id=self.page)
        if self.path_prefix:
            q &= Q(page__path__startswith=self.path_prefix)
        return q

    def hour_q(self) -> Q:
        """q() for page_hour, whose one index is its (page, hour) key: the rows are
        found through the pages, their ids given as a list (``page_id = ANY(...)``:
        one index range per page whatever the planner's estimates); a filter on the
        site alone would read the whole table."""
        if self.page is not None:
            return self.q()
        pages = Page.objects.all()
        if self.sites is not None:
            pages = pages.filter(site_id__in=sorted(self.sites))
        if self.site is not None:
            pages = pages.filter(site_id=self.site)
        if self.path_prefix:
            pages = pages.filter(path__startswith=self.path_prefix)
        return self.q() & Q(page_id__in=sorted(pages.values_list("id", flat=True)))

    def key(self) -> str:
        sites = "*" if self.sites is None else ",".join(map(str, sorted(self.sites)))
        return f"{self.site}|{self.page}|{self.path_prefix}|{sites}"


def _aggregate_expressions() -> dict:
    exprs = {key: Sum(key) for key in TRAFFIC}
    for strategy in STRATEGIES:
        for name in ("samples", "score_sum"):
            exprs[f"{strategy}_{name}"] = Sum(f"{strategy}_{name}")
        for vital in VITALS:
            for name in ("n", "good", "poor"):
                exprs[f"{strategy}_{vital}_{name}"] = Sum(f"{strategy}_{vital}_{name}")
    return exprs


def _page_hour_expressions() -> dict:
    exprs = {key: Sum(key) for key in TRAFFIC}
    for strategy in STRATEGIES:
        score = f"{strategy}_score"
        exprs[f"{strategy}_samples"] = Count(score)
        exprs[f"{strategy}_score_sum"] = Sum(score)
        for vital in VITALS:
            column = f"{strategy}_{vital}"
            good, poor = THRESHOLDS[vital]
            exprs[f"{column}_n"] = Count(column)
            exprs[f"{column}_good"] = Count(column, filter=Q(**{f"{column}__lte": good}))
            exprs[f"{column}_poor"] = Count(column, filter=Q(**{f"{column}__gt": poor}))
    return exprs


# Sums and counts through the ORM; histograms are merged by _histograms(). An
# element's count is a signed 32-bit number: a larger sum goes in several elements.
_MAX_ELEMENT_COUNT = 2**31 - 1
AGGREGATES = _aggregate_expressions()
PAGE_HOUR_AGGREGATES = _page_hour_expressions()
HIST_KEYS = [f"{s}_{v}" for s in STRATEGIES for v in VITALS]


def _histograms(piece: Piece, filters: Filters, group: str | None) -> dict:
    """Merged histograms of a piece: {group value: {"<strategy>_<vital>_hist": elements}}.

    Set-based in SQL (unnest, then sum per bucket), linear in the number of
    elements; the ORM builds the filtered inner query.
    """
    level_is_hour = piece.level == "hour"
    columns = HIST_KEYS if level_is_hour else [f"{k}_hist" for k in HIST_KEYS]
    group_key = {"group_key": F(group)} if group else {}
    queryset = _queryset(piece, filters, per_page=group == "page_id")
    try:
        inner, params = queryset.values(*columns, **group_key).query.sql_with_params()
    except EmptyResultSet:  # no site to read: no histograms
        return {}
    parts = {
        "inner": sql.SQL(inner),  # the ORM's query, with its %s placeholders
        "pairs": sql.SQL(", ").join(
            sql.SQL("({}, {})").format(sql.Literal(i), sql.Identifier("a", c))
            for i, c in enumerate(columns)
        ),
        "group": sql.SQL("a.group_key, " if group else ""),
    }
    if level_is_hour:
        query = sql.SQL(
            "SELECT {group}h.k, hist_bucket(h.v)::bigint AS b, count(*) FROM ({inner}) a "
            "CROSS JOIN LATERAL (VALUES {pairs}) AS h(k, v) WHERE h.v IS NOT NULL "
            "GROUP BY {group}h.k, b"
        ).format(**parts)
    else:
        query = sql.SQL(
            "SELECT {group}h.k, hist_element_bucket(e) AS b, sum(hist_element_count(e)) "
            "FROM ({inner}) a "
            "CROSS JOIN LATERAL (VALUES {pairs}) AS h(k, arr) "
            "CROSS JOIN LATERAL unnest(h.arr) AS e GROUP BY {group}h.k, b"
        ).format(**parts)
    out: dict = {}
    with connection.cursor() as cursor:
        cursor.execute(query.as_string(cursor.connection), params)
        for row in cursor.fetchall():
            key, (k, bucket, count) = (row[0], row[1:]) if group else (None, row)
            hist = out.setdefault(key, {}).setdefault(f"{HIST_KEYS[k]}_hist", [])
            count = int(count)
            while count > 0:  # none when deltas emptied the bucket
                part = min(count, _MAX_ELEMENT_COUNT)
                hist.append((int(bucket) << 32) + part)
                count -= part
    return out


def _queryset(piece: Piece, filters: Filters, per_page: bool = False):
    if piece.level == "hour":
        return PageHour.objects.filter(filters.hour_q(), hour__gte=piece.start, hour__lt=piece.end)
    if piece.level == "day" and not per_page and filters.page is None and not filters.path_prefix:
        # All pages (of a site): one row per site and day, histograms merged.
        return SiteDailyAggregate.objects.filter(
            filters.q(), period_start__gte=piece.start, period_start__lt=piece.end
        )
    model = LEVEL_MODELS[piece.level]
    return model.objects.filter(
        filters.q(), period_start__gte=piece.start, period_start__lt=piece.end
    )


def _expressions(level: str) -> dict:
    return PAGE_HOUR_AGGREGATES if level == "hour" else AGGREGATES


def range_partial(start: datetime, end: datetime, filters: Filters) -> Partial:
    total = Partial()
    for piece in decompose(start, end, settings.METRIFLOW_INTERVAL_HOURS):
        row = _queryset(piece, filters).aggregate(**_expressions(piece.level))
        row.update(_histograms(piece, filters, None).get(None, {}))
        total.add(Partial.from_aggregate_row(row))
    return total


def _grouped_partials(piece: Piece, filters: Filters, group: str) -> dict:
    queryset = _queryset(piece, filters, per_page=group == "page_id")
    rows = queryset.values(group).annotate(**_expressions(piece.level))
    hists = _histograms(piece, filters, group)
    out = {}
    for row in rows:
        row.update(hists.get(row[group], {}))
        out[row[group]] = Partial.from_aggregate_row(row)
    return out


def range_partials_by_page(start: datetime, end: datetime, filters: Filters) -> dict:
    per_page: dict[int, Partial] = {}
    for piece in decompose(start, end, settings.METRIFLOW_INTERVAL_HOURS):
        for page_id, part in _grouped_partials(piece, filters, "page_id").items():
            per_page.setdefault(page_id, Partial()).add(part)
    return per_page


# ------------------------------------------------------------------ freshness


def _deltas_pending(start: datetime, end: datetime) -> bool:
    """Whether a stage has late-data deltas still to add for a period in [start, end)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT EXISTS (SELECT FROM pipeline_delta "
            "WHERE period_start >= %s AND period_start < %s)",
            [start, end],
        )
        return cursor.fetchone()[0]


def freshness(start: datetime, end: datetime) -> dict:
    """The newest pipeline run over the range and whether work for it is pending."""
    windows = PipelineLedger.objects.exclude(stage="staged").filter(
        window_start__lt=end, window_end__gt=start
    )
    newest = windows.filter(status="done").aggregate(newest=Max("finished_at"))["newest"]
    year_start = start.replace(month=1, day=1, hour=0)  # the coarsest key holding start
    pending = (
        windows.exclude(status="done").exists()
        or PipelineDirty.objects.filter(period_start__lt=end, period_start__gte=year_start).exists()
        or _deltas_pending(year_start, end)
        or IngestBatch.objects.filter(
            ledger__stage="staged",
            ledger__status__in=("pending", "running", "failed"),
            first_hour__lt=end,
            last_hour__gte=start,
        ).exists()
    )
    return {"pipeline_run_at": newest, "pending": pending, "quality": quality(start, end)}


QUALITY_BATCHES = 20  # the most batches a report's quality part lists


def quality(start: datetime, end: datetime) -> list[dict]:
    """The batches over ``[start, end)`` whose GA4 reports said they are incomplete.

    From ``ingest_batch_quality`` (one row per flagged response, with the UTC
    hours of its rows); a batch that failed loaded nothing and is left out.
    """
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT q.batch_id, count(*), sum(q.rows)::bigint, min(q.first_hour), "
            "max(q.last_hour), bool_or(q.data_loss_from_other_row), "
            "bool_or(q.subject_to_thresholding), bool_or(q.sampling IS NOT NULL) "
            "FROM ingest_batch_quality q JOIN ingest_batch b ON b.id = q.batch_id "
            "WHERE b.status IN ('loaded', 'broken') AND q.first_hour < %s AND q.last_hour >= %s "
            "GROUP BY q.batch_id ORDER BY q.batch_id DESC LIMIT %s",
            [end, start, QUALITY_BATCHES],
        )
        rows = cursor.fetchall()
    keys = (
        "batch",
        "responses",
        "rows",
        "first_hour",
        "last_hour",
        "data_loss_from_other_row",
        "subject_to_thresholding",
        "sampled",
    )
    return [dict(zip(keys, row, strict=True)) for row in rows]


# ------------------------------------------------------------------ reports


def _cached(kind: str, params: dict, compute, encoded: bool = False):
    """The answer from Redis, or computed and stored.

    An entry holds the data version (bumped by the pipeline after every change)
    it was computed under, and is served only while that is still the current
    version, so it is never stale. The version and the entry come in one MGET.
    The version is read before computing: an answer computed while the pipeline
    changed its data is stored under the older version and never served.

    Answers are stored as JSON. With ``encoded`` the stored JSON is returned as
    an ``orjson.Fragment`` that the renderer copies as it is (a cached JSON
    answer is never decoded: for a top-pages page that is most of its cost);
    otherwise it is decoded, so that computed and cached answers have the same
    types (times as ISO strings).
    """
    raw = json.dumps([kind, params, settings.METRIFLOW_INTERVAL_HOURS], default=str)
    # v3: (version, JSON) of rounded answers, scoped to the caller's sites; an
    # entry of an earlier layout is never read.
    key = "report:v3:" + hashlib.sha256(raw.encode()).hexdigest()
    found = cache.get_many([dataversion.KEY, key])
    version, entry = found.get(dataversion.KEY), found.get(key)
    if version is None:
        # Redis lost the version (made anew, never an older one) or cannot be
        # reached (None: the answer is computed and not stored).
        version, entry = dataversion.current(), None
    if entry is not None and entry[0] == version:
        blob = entry[1]
    else:
        blob = orjson.dumps(compute(), option=JSON_OPTIONS)
        if version is not None:
            cache.set(key, (version, blob), settings.METRIFLOW_REPORT_CACHE_SECONDS)
    return orjson.Fragment(blob) if encoded else orjson.loads(blob)


def _summary_body(start: datetime, end: datetime, filters: Filters) -> dict:
    fresh = freshness(start, end)
    body = metrics_of(range_partial(start, end, filters))
    return {"from": start, "to": end, **body, "freshness": fresh}


def summary(start: datetime, end: datetime, filters: Filters, encoded: bool = False):
    params = {"from": start, "to": end, "filters": filters.key()}
    return _cached("summary", params, lambda: _summary_body(start, end, filters), encoded)


def bucket_starts(granularity: str, start: datetime, end: datetime) -> list[datetime]:
    hours = settings.METRIFLOW_INTERVAL_HOURS
    at = unit_start(GRANULARITY_LEVEL[granularity], start, hours)
    starts = []
    while at < end:
        starts.append(at)
        at = unit_end(GRANULARITY_LEVEL[granularity], at, hours)
    return starts


def timeseries(
    granularity: str, start: datetime, end: datetime, filters: Filters, encoded: bool = False
):
    params = {"g": granularity, "from": start, "to": end, "filters": filters.key()}

    def compute() -> dict:
        fresh = freshness(start, end)
        points = []
        for bucket in bucket_starts(granularity, start, end):
            b_end = unit_end(
                GRANULARITY_LEVEL[granularity], bucket, settings.METRIFLOW_INTERVAL_HOURS
            )
            low, high = max(bucket, start), min(b_end, end)
            points.append({"start": bucket, "end": b_end, "partial": low, "upto": high})
        # Whole buckets come from one grouped query on the granularity's table;
        # buckets cut by the range's ends are composed like any range.
        whole = [p for p in points if p["partial"] == p["start"] and p["upto"] == p["end"]]
        grouped: dict = {}
        if whole:
            level = GRANULARITY_LEVEL[granularity]
            piece = Piece(level, whole[0]["start"], whole[-1]["end"])
            column = "hour" if level == "hour" else "period_start"
            grouped = _grouped_partials(piece, filters, column)
        series = []
        for point in points:
            if point in whole:
                part = grouped.get(point["start"], Partial())
            else:
                part = range_partial(point["partial"], point["upto"], filters)
            series.append({"start": point["partial"], "end": point["upto"], **metrics_of(part)})
        return {
            "from": start,
            "to": end,
            "granularity": granularity,
            "series": series,
            "freshness": fresh,
        }

    return _cached("timeseries", params, compute, encoded)


ORDERINGS = {
    "users": ("traffic", "users"),
    "sessions": ("traffic", "sessions"),
    "views": ("traffic", "views"),
    "bounces": ("traffic", "bounces"),
    "engagement_seconds": ("traffic", "engagement_seconds"),
    "bounce_rate": ("traffic", "bounce_rate"),
    "views_per_session": ("traffic", "views_per_session"),
    "avg_engagement_seconds": ("traffic", "avg_engagement_seconds"),
    "performance_score_avg": ("performance", "performance_score_avg"),
    "samples": ("performance", "samples"),
}


def top_pages(
    start: datetime,
    end: datetime,
    filters: Filters,
    order_by: str,
    offset: int,
    limit: int,
    encoded: bool = False,
):
    """One page of the matching pages with their metrics, in the requested order.

    The whole ranking and each requested slice of it are cached, so a repeated
    request reads only its own rows from Redis.
    """
    params = {"from": start, "to": end, "filters": filters.key(), "order": order_by}

    def compute_slice() -> dict:
        ranking = _ranking(start, end, filters, order_by, params)
        rows = ranking["rows"]
        following = offset + limit
        return {
            **{k: v for k, v in ranking.items() if k != "rows"},
            "count": len(rows),
            "next": cursors.encode(following) if following < len(rows) else None,
            "results": rows[offset:following],
        }

    slice_params = {**params, "offset": offset, "limit": limit}
    return _cached("pages-slice", slice_params, compute_slice, encoded)


def _ranking(start: datetime, end: datetime, filters: Filters, order_by: str, params) -> dict:

    def compute() -> dict:
        fresh = freshness(start, end)
        per_page = range_partials_by_page(start, end, filters)
        pages = Page.objects.in_bulk(list(per_page))
        rows = []
        for page_id, part in per_page.items():
            page = pages[page_id]
            rows.append(
                {"page": {"id": page_id, "url": page.url, "site": page.site_id}, **metrics_of(part)}
            )
        descending = order_by.startswith("-")
        group, name = ORDERINGS[order_by.lstrip("-")]

        def value(row):
            metric = row[group][name] if group == "traffic" else row["performance"]["both"][name]
            return metric if metric is not None else float("-inf") if descending else float("inf")

        rows.sort(key=lambda r: r["page"]["id"])
        rows.sort(key=value, reverse=descending)
        return {"from": start, "to": end, "order_by": order_by, "rows": rows, "freshness": fresh}

    return _cached("pages", params, compute)


def page_report(page: Page, start: datetime, end: datetime, encoded: bool = False):
    def compute() -> dict:
        return {
            "page": {"id": page.id, "url": page.url, "path": page.path, "site": page.site_id},
            **_summary_body(start, end, Filters(page=page.id)),
        }

    return _cached("page", {"from": start, "to": end, "page": page.id}, compute, encoded)


def _hour_bound(order: str) -> Subquery:
    """A site's first (``hour``) or last (``-hour``) hour in page_hour: each page's own,
    one read of the (page, hour) key from that end, then the site's over its pages."""
    hour = PageHour.objects.filter(page_id=OuterRef("pk")).order_by(order).values("hour")
    per_page = Page.objects.filter(site_id=OuterRef("pk")).annotate(h=Subquery(hour[:1]))
    h = F("h").asc(nulls_last=True) if order == "hour" else F("h").desc(nulls_last=True)
    return Subquery(per_page.order_by(h).values("h")[:1])


def site_coverage_rows(site_ids):
    """The query of :func:`site_coverage`: per site, its first and last hour and pages."""
    pages = (
        Page.objects.filter(site_id=OuterRef("pk"))
        .order_by()
        .values("site_id")
        .annotate(n=Count("*"))
        .values("n")
    )
    return (
        Site.objects.filter(pk__in=sorted(site_ids))
        .annotate(
            first_hour=_hour_bound("hour"),
            last_hour=_hour_bound("-hour"),
            page_count=Coalesce(Subquery(pages), 0),
        )
        .values("pk", "first_hour", "last_hour", "page_count")
    )


def site_coverage(site_ids) -> dict[int, dict]:
    """Per site id: the first and last hour with data (page_hour) and its pages.

    Cached under the data version like the reports; each bound is, per page of the
    site, one read of page_hour's (page, hour) key from that end of the page.
    """

    def compute() -> dict:
        return {
            row["pk"]: {
                "first_hour": row["first_hour"],
                "last_hour": row["last_hour"],
                "pages": row["page_count"],
            }
            for row in site_coverage_rows(site_ids)
        }

    found = _cached("site-coverage", {"sites": sorted(site_ids)}, compute)
    return {int(site_id): coverage for site_id, coverage in found.items()}


def service_health() -> dict[str, bool]:
    """Whether PostgreSQL and Redis answer. Touches nothing a report holds (no table, no
    report slot, no rate-limit counter) and waits at most HEALTH_TIMEOUT_MS on PostgreSQL."""
    health = {}
    try:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(
                "SELECT set_config('statement_timeout', %s, true)", [str(HEALTH_TIMEOUT_MS)]
            )
            cursor.execute("SELECT 1")
            health["postgres"] = cursor.fetchone() == (1,)
    except Exception:
        health["postgres"] = False
    try:
        health["redis"] = bool(cache._cache.get_client().ping())
    except Exception:
        health["redis"] = False
    return health
