"""The metrics of CONTRACT section 3, composed from stored sums, counts and histograms.

A *partial* is what one piece of a range contributes: traffic sums, and per
strategy the samples, score sum and per vital n / good / poor and a
histogram (a Counter of bucket -> count). Partials add up; the metrics are
computed once, from the total. Histogram buckets mirror ``sql/functions/
stages.sql`` (docs/metrics.md).
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field

from pipeline import catalog

# From pipeline/catalog.py (the SQL table vital holds the same thresholds).
STRATEGIES = catalog.STRATEGIES
VITALS = catalog.VITAL_NAMES
THRESHOLDS = catalog.THRESHOLDS  # good: value <= first; poor: value > second
TRAFFIC = catalog.TRAFFIC_NAMES
PERCENTILES = (("p50", 0.50), ("p75", 0.75), ("p95", 0.95))
# Decimals an answer gives each kind of metric (docs/metrics.md, "Precision of answers"):
# float sums as stored (a millionth), ratios and shares to a millionth, an average of
# seconds to a millisecond, the score (0..100) to a thousandth of a point, percentiles of
# the millisecond vitals to 0.1 ms and of CLS to 4 decimals. Counts are integers. The
# relative change of a metric against a compared range (reporting/comparison.py) to
# 4 decimals (a hundredth of a percent).
PRECISION = {
    "sum": 6,
    "ratio": 6,
    "seconds": 3,
    "score": 3,
    "ms": 1,
    "cls": 4,
    "change": 4,
}
TRAFFIC_FLOAT_SUMS = tuple(m.name for m in catalog.TRAFFIC if m.kind == catalog.EXACT_SUM)
_HALF = 1 << 31  # the signed count's offset


def bucket_value(bucket: int) -> float:
    return catalog.HISTOGRAM.value(bucket)


def add_histogram(counter: Counter, elements: list[int] | None) -> None:
    """Adds histogram elements, (bucket << 32) + count with a signed 32-bit count (a
    delta's -1 takes a value away; sql/functions/stages.sql, hist_element_bucket)."""
    for element in elements or ():
        bucket = (element + _HALF) >> 32
        counter[bucket] += element - (bucket << 32)


def percentile(counter: Counter, p: float) -> float | None:
    total = sum(counter.values())
    if not total:
        return None
    rank = math.ceil(p * total)
    running = 0
    for bucket in sorted(counter):
        running += counter[bucket]
        if running >= rank:
            return bucket_value(bucket)
    return None  # unreachable


@dataclass
class VitalPart:
    n: int = 0
    good: int = 0
    poor: int = 0
    hist: Counter = field(default_factory=Counter)

    def add(self, other: VitalPart) -> None:
        self.n += other.n
        self.good += other.good
        self.poor += other.poor
        self.hist.update(other.hist)


@dataclass
class StrategyPart:
    samples: int = 0
    score_sum: float = 0.0
    vitals: dict[str, VitalPart] = field(default_factory=lambda: {v: VitalPart() for v in VITALS})

    def add(self, other: StrategyPart) -> None:
        self.samples += other.samples
        self.score_sum += other.score_sum
        for vital in VITALS:
            self.vitals[vital].add(other.vitals[vital])


@dataclass
class Partial:
    traffic: dict[str, float] = field(default_factory=lambda: dict.fromkeys(TRAFFIC, 0))
    strategies: dict[str, StrategyPart] = field(
        default_factory=lambda: {s: StrategyPart() for s in STRATEGIES}
    )

    def add(self, other: Partial) -> None:
        for key in TRAFFIC:
            self.traffic[key] += other.traffic[key]
        for strategy in STRATEGIES:
            self.strategies[strategy].add(other.strategies[strategy])

    @classmethod
    def from_aggregate_row(cls, row: dict) -> Partial:
        """From a row of an aggregate table (or sums over rows), keyed by column name."""
        part = cls()
        for key in TRAFFIC:
            part.traffic[key] = row.get(key) or 0
        for strategy in STRATEGIES:
            target = part.strategies[strategy]
            target.samples = row.get(f"{strategy}_samples") or 0
            target.score_sum = row.get(f"{strategy}_score_sum") or 0.0
            for vital in VITALS:
                v = target.vitals[vital]
                v.n = row.get(f"{strategy}_{vital}_n") or 0
                v.good = row.get(f"{strategy}_{vital}_good") or 0
                v.poor = row.get(f"{strategy}_{vital}_poor") or 0
                add_histogram(v.hist, row.get(f"{strategy}_{vital}_hist"))
        return part


def rounded(value: float | None, kind: str) -> float | None:
    """``value`` to the decimals of its kind of metric (``PRECISION``); None stays None."""
    return None if value is None else round(value, PRECISION[kind])


def vital_kind(vital: str) -> str:
    return catalog.VITAL[vital].precision


def _ratio(numerator: float, denominator: float, kind: str = "ratio") -> float | None:
    return rounded(numerator / denominator, kind) if denominator else None


def _strategy_metrics(part: StrategyPart) -> dict:
    out: dict = {
        "samples": part.samples,
        "performance_score_avg": _ratio(part.score_sum, part.samples, "score"),
    }
    for vital in VITALS:
        v = part.vitals[vital]
        metrics = {
            name: rounded(percentile(v.hist, p), vital_kind(vital)) for name, p in PERCENTILES
        }
        metrics.update(
            samples=v.n,
            good=_ratio(v.good, v.n),
            needs_improvement=_ratio(v.n - v.good - v.poor, v.n),
            poor=_ratio(v.poor, v.n),
        )
        out[vital] = metrics
    return out


def metrics_of(part: Partial) -> dict:
    """Every metric of CONTRACT section 3 from a total, each to its ``PRECISION``."""
    t = part.traffic
    both = StrategyPart()
    for strategy in STRATEGIES:
        both.add(part.strategies[strategy])
    return {
        "traffic": {
            **{k: rounded(t[k], "sum") if k in TRAFFIC_FLOAT_SUMS else t[k] for k in TRAFFIC},
            "bounce_rate": _ratio(t["bounces"], t["sessions"]),
            "avg_engagement_seconds": _ratio(t["engagement_seconds"], t["sessions"], "seconds"),
            "views_per_session": _ratio(t["views"], t["sessions"]),
        },
        "performance": {
            "mobile": _strategy_metrics(part.strategies["mobile"]),
            "desktop": _strategy_metrics(part.strategies["desktop"]),
            "both": _strategy_metrics(both),
        },
    }
