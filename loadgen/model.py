"""Record models of the two sources: sampling, formatting, corrections, faults.

Each source samples the columns of a chunk of records with numpy, then formats
every record with a single ``%`` template (no per-record dicts, no JSON encoder).
Templates take the same arguments whatever the null pattern of a record, so a
record picks its template by index and the loop stays a plain ``map``.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from dataclasses import dataclass

import numpy as np

from loadgen import timeutil
from loadgen.catalog import Catalog, traffic_factor
from loadgen.urls import TABLE_WIDTH, url_table

STRATEGIES = ("mobile", "desktop")
# Offsets (minutes) used for the measurement times that are not written in UTC.
TZ_OFFSETS = (120, 60, -300, 330, -180, 540, -420, 600, -600, 345)


@dataclass
class ChunkContext:
    """Per-hour values of one chunk of hours."""

    first_hour: int  # index of the chunk's first hour since --start
    hours: list[dt.datetime]
    factor: np.ndarray  # traffic multiplier per hour
    iso: np.ndarray  # object array of bytes: b"YYYY-MM-DDTHH:00:00Z"
    prefix: np.ndarray  # object array of bytes: b"YYYY-MM-DDTHH:"
    ticks: np.ndarray  # int64 .NET ticks of each hour

    @classmethod
    def build(cls, start: dt.datetime, first_hour: int, n_hours: int) -> ChunkContext:
        hours = [timeutil.hour_at(start, first_hour + i) for i in range(n_hours)]
        iso = _object_array([timeutil.iso_hour(h).encode() for h in hours])
        prefix = _object_array([s[:14] for s in iso])
        base = timeutil.ticks(hours[0])
        ticks = base + np.arange(n_hours, dtype=np.int64) * timeutil.TICKS_PER_HOUR
        hod = np.array([h.hour for h in hours])
        dow = np.array([h.weekday() for h in hours])
        return cls(first_hour, hours, traffic_factor(hod, dow), iso, prefix, ticks)


def _object_array(values: list) -> np.ndarray:
    arr = np.empty(len(values), dtype=object)
    arr[:] = values
    return arr


# "MM:SSZ" for every second of an hour.
_MMSS_Z = _object_array([f"{s // 60:02d}:{s % 60:02d}Z".encode() for s in range(3600)])


def _bad_timestamp(value: str, rng: np.random.Generator) -> str:
    """An invalid timestamp derived from a valid ISO one."""
    y, mo, d, h = value[0:4], value[5:7], value[8:10], value[11:13]
    choices = (
        f"{y}-13-{d}T{h}:00:00Z",
        f"{y}-{mo}-32T{h}:00:00Z",
        f"{y}-{mo}-{d}T25:00:00Z",
        f"{d}/{mo}/{y} {h}:00",
        f"{y}-{mo}-{d}T{h}:61:00Z",
        "not-a-date",
        "",
    )
    return choices[int(rng.integers(len(choices)))]


def _bad_url(url: str, rng: np.random.Generator) -> str:
    rest = url.split("://", 1)[1]
    path = rest[rest.find("/") :]
    choices = (f"ftp://{rest}", path, rest, f"file:///var/www{path}", f"mailto:webmaster@{rest}")
    return choices[int(rng.integers(len(choices)))]


def _wrong_type(value: object, rng: np.random.Generator) -> object:
    if rng.random() < 0.5:
        return str(value) if value is not None else "n/a"
    return bool(rng.random() < 0.5)


class Source:
    """Interface shared by the GA and PSI models."""

    name: str
    kinds: tuple[str, ...]

    def __init__(self, catalog: Catalog, seed_format: bool):
        self.catalog = catalog
        self.seed_format = seed_format
        self.urls = url_table(catalog.urls)
        self.page_numbers = np.arange(1, len(catalog.urls) + 1, dtype=np.int64)

    def page_strings(self, page: np.ndarray, url_code: np.ndarray | None) -> list[bytes]:
        index = page * TABLE_WIDTH
        if url_code is not None:
            index = index + url_code
        return self.urls[index].tolist()


class GA(Source):
    name = "ga"
    contract_kinds = (
        "missing_field",
        "wrong_type",
        "negative_count",
        "bounces_gt_sessions",
        "bad_timestamp",
        "bad_url",
    )
    seed_kinds = ("missing_field", "wrong_type", "negative_count", "bad_timestamp")
    _TEMPLATE = (
        b'{"page":"%s","hour":"%s","users":%d,"sessions":%d,"views":%d,"bounces":%d,'
        b'"engagement_seconds":%d.%d}'
    )
    _SEED_TEMPLATE = b'{"Date":%d,"Page":%d,"Users":%d,"Views":%d,"Sessions":%d}'

    def __init__(self, catalog: Catalog, seed_format: bool):
        super().__init__(catalog, seed_format)
        self.kinds = self.seed_kinds if seed_format else self.contract_kinds

    def sample(self, rng, page, hour, ctx, strategy=None) -> dict[str, np.ndarray]:
        cat = self.catalog
        n = len(page)
        lam = cat.users_level[page] * ctx.factor[hour]
        # Negative binomial: Poisson around a gamma-distributed level.
        users = rng.poisson(lam * rng.gamma(8.0, 1.0 / 8.0, n))
        sessions = users + rng.poisson(users * cat.extra_sessions[page])
        views = sessions + rng.poisson(sessions * cat.extra_views[page])
        bounces = rng.binomial(sessions, cat.bounce_rate[page])
        per_session = rng.lognormal(0.0, 0.5, n) * cat.engagement_median[page]
        tenths = np.rint(sessions * per_session * 10.0).astype(np.int64)
        return {
            "users": users,
            "sessions": sessions,
            "views": views,
            "bounces": bounces,
            "tenths": tenths,
        }

    def value_columns(self, cols) -> list[np.ndarray]:
        if self.seed_format:
            return [cols["users"], cols["sessions"], cols["views"]]
        return [cols[k] for k in ("users", "sessions", "views", "bounces", "tenths")]

    def make_different(self, cols, mask) -> None:
        cols["views"][mask] += 1

    def format(self, cols, page, hour, ctx, url_code=None, tz_code=None) -> list[bytes]:
        if self.seed_format:
            return list(
                map(
                    self._SEED_TEMPLATE.__mod__,
                    zip(
                        ctx.ticks[hour].tolist(),
                        self.page_numbers[page].tolist(),
                        cols["users"].tolist(),
                        cols["views"].tolist(),
                        cols["sessions"].tolist(),
                        strict=True,
                    ),
                )
            )
        whole, tenth = np.divmod(cols["tenths"], 10)
        return list(
            map(
                self._TEMPLATE.__mod__,
                zip(
                    self.page_strings(page, url_code),
                    ctx.iso[hour].tolist(),
                    cols["users"].tolist(),
                    cols["sessions"].tolist(),
                    cols["views"].tolist(),
                    cols["bounces"].tolist(),
                    whole.tolist(),
                    tenth.tolist(),
                    strict=True,
                ),
            )
        )

    def mutate(self, rec: dict, kind: str, rng: np.random.Generator) -> dict:
        """Make ``rec`` break exactly one contract rule of the given kind."""

        def pick(seq):
            return seq[int(rng.integers(len(seq)))]

        if self.seed_format:
            if kind == "missing_field":
                del rec[pick(("Date", "Page"))]
            elif kind == "wrong_type":
                field = pick(("Users", "Views", "Sessions"))
                rec[field] = _wrong_type(rec[field], rng)
            elif kind == "negative_count":
                rec[pick(("Users", "Views", "Sessions"))] = -int(rng.integers(1, 50))
            elif kind == "bad_timestamp":
                rec["Date"] = pick((-int(rng.integers(1, 10**12)), timeutil.MAX_TICKS + 1))
            return rec
        if kind == "missing_field":
            # Never "sessions": without it bounces <= sessions could not be checked.
            del rec[pick(("page", "hour", "users", "views", "bounces", "engagement_seconds"))]
        elif kind == "wrong_type":
            field = pick(("users", "views", "engagement_seconds"))
            rec[field] = _wrong_type(rec[field], rng)
        elif kind == "negative_count":
            field = pick(("users", "views", "bounces", "engagement_seconds"))
            rec[field] = -int(rng.integers(1, 50))
        elif kind == "bounces_gt_sessions":
            rec["bounces"] = rec["sessions"] + int(rng.integers(1, 6))
        elif kind == "bad_timestamp":
            rec["hour"] = _bad_timestamp(rec["hour"], rng)
        elif kind == "bad_url":
            rec["page"] = _bad_url(rec["page"], rng)
        return rec


# PSI vitals and their medians (mobile, desktop).
_VITALS = ("lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls")
_MEDIANS = {
    "lcp_ms": (2300.0, 1600.0),
    "fcp_ms": (1500.0, 1000.0),
    "inp_ms": (180.0, 90.0),
    "ttfb_ms": (600.0, 400.0),
}
# Score curves per strategy: (value scoring 0.9, value scoring 0.5), in the style of
# Lighthouse (scores are stricter than the field thresholds of the vitals).
_CURVES = {
    "lcp_ms": ((1500.0, 2800.0), (1000.0, 2000.0)),
    "fcp_ms": ((1000.0, 2000.0), (700.0, 1400.0)),
    "inp_ms": ((100.0, 300.0), (60.0, 200.0)),
    "ttfb_ms": ((400.0, 1000.0), (300.0, 800.0)),
    "cls": ((0.05, 0.2), (0.05, 0.2)),
}
_WEIGHTS = {"lcp_ms": 0.25, "fcp_ms": 0.10, "inp_ms": 0.30, "ttfb_ms": 0.10, "cls": 0.25}
_LOG_MED = {k: np.log(np.array(v)) for k, v in _MEDIANS.items()}
# Score of one vital: 1 / (1 + (x / p50) ** slope), which is 0.9 at p10 and 0.5 at p50.
_CURVE_SLOPE = {
    k: np.array([math.log(9.0) / math.log(p50 / p10) for p10, p50 in v]) for k, v in _CURVES.items()
}
_CURVE_LOG_P50 = {k: np.log(np.array([p50 for _p10, p50 in v])) for k, v in _CURVES.items()}
# Probability of a missing value per vital; a missing value is null or (30%) absent.
_MISSING = {"lcp_ms": 0.01, "fcp_ms": 0.01, "inp_ms": 0.10, "ttfb_ms": 0.01, "cls": 0.01}


def _psi_templates() -> np.ndarray:
    """One template per (null pattern, strategy): index ``pattern * 2 + strategy``.

    A pattern has one base-3 digit per vital: 0 present, 1 null, 2 absent. Templates
    of missing values consume their argument with ``%.0a`` so that every template
    takes the same arguments. CLS is below 1, written as ``0.%03d`` of its thousandths.
    """
    out = []
    for code in range(3**5):
        for strategy in STRATEGIES:
            parts = [
                '{"page":"%s","measured_at":"%s%s","strategy":"',
                strategy,
                '","performance_score":%d',
            ]
            c = code
            for name in _VITALS:
                state, c = c % 3, c // 3
                number = "0.%03d" if name == "cls" else "%d"
                if state == 0:
                    parts.append(f',"{name}":{number}')
                elif state == 1:
                    parts.append(f',"{name}":null%.0a')
                else:
                    parts.append("%.0a")
            parts.append("}")
            out.append("".join(parts).encode())
    return _object_array(out)


_PSI_TEMPLATES = _psi_templates()
_SEED_PSI_TEMPLATES = _object_array(
    [
        b'{"Date":%d,"Page":%d,"PerformanceScore":%d,"LCP_MS":%d}',
        b'{"Date":%d,"Page":%d,"PerformanceScore":%d,"LCP_MS":null%.0a}',
    ]
)


class PSI(Source):
    name = "psi"
    contract_kinds = (
        "missing_field",
        "wrong_type",
        "unknown_strategy",
        "bad_timestamp",
        "bad_url",
        "score_gt_100",
        "negative_vital",
    )
    seed_kinds = ("missing_field", "wrong_type", "bad_timestamp", "score_gt_100", "negative_vital")

    def __init__(self, catalog: Catalog, seed_format: bool):
        super().__init__(catalog, seed_format)
        self.kinds = self.seed_kinds if seed_format else self.contract_kinds
        self.mobile_share = 0.0 if seed_format else 0.55
        self._log_speed = np.log(catalog.speed)

    def sample(self, rng, page, hour, ctx, strategy=None) -> dict[str, np.ndarray]:
        cat = self.catalog
        n = len(page)
        if strategy is None:
            strategy = (rng.random(n) >= self.mobile_share).astype(np.int64)  # 0 mobile
        st = strategy
        second = rng.integers(0, 3600, n)
        z = rng.standard_normal((6, n))
        # Log of a per-record load factor shared by the loading vitals: page speed,
        # noise, and a slow tail (a few % of the measurements several times slower).
        slow = np.where(rng.random(n) < 0.03, np.log(rng.uniform(2.5, 6.0, n)), 0.0)
        base = self._log_speed[page] + 0.22 * z[0] + slow
        log_ttfb = _LOG_MED["ttfb_ms"][st] + base + 0.35 * z[1]
        ttfb = np.exp(log_ttfb)
        fcp = np.maximum(np.exp(_LOG_MED["fcp_ms"][st] + base + 0.25 * z[2]), ttfb + 40.0)
        lcp = np.maximum(np.exp(_LOG_MED["lcp_ms"][st] + base + 0.3 * z[3]), fcp)
        inp_slow = np.where(rng.random(n) < 0.03, np.log(rng.uniform(2.5, 6.0, n)), 0.0)
        log_inp = _LOG_MED["inp_ms"][st] + 0.5 * self._log_speed[page] + 0.45 * z[4] + inp_slow
        cls = np.minimum(np.exp(math.log(0.03) + z[5]) * cat.cls_scale[page], 0.6)
        cls = np.where(rng.random(n) < 0.15, 0.0, cls)
        logs = {
            "lcp_ms": np.log(lcp),
            "fcp_ms": np.log(fcp),
            "inp_ms": log_inp,
            "ttfb_ms": log_ttfb,
            "cls": np.log(np.maximum(cls, 1e-4)),
        }
        score = rng.normal(0.0, 2.0, n)
        for name, weight in _WEIGHTS.items():
            slope, log_p50 = _CURVE_SLOPE[name], _CURVE_LOG_P50[name]
            score += (100.0 * weight) / (1.0 + np.exp(slope[st] * (logs[name] - log_p50[st])))
        cols = {
            "strategy": strategy,
            "second": second,
            "score": np.clip(np.rint(score), 0, 100).astype(np.int64),
            "lcp_ms": np.rint(lcp).astype(np.int64),
            "fcp_ms": np.rint(fcp).astype(np.int64),
            "inp_ms": np.rint(np.exp(log_inp)).astype(np.int64),
            "ttfb_ms": np.rint(ttfb).astype(np.int64),
            "cls_milli": np.rint(cls * 1000.0).astype(np.int64),
        }
        code = np.zeros(n, dtype=np.int64)
        weight = 1
        for name in _VITALS:
            if self.seed_format and name != "lcp_ms":
                weight *= 3
                continue
            missing = rng.random(n) < _MISSING[name]
            absent = missing & (rng.random(n) < 0.3) & (not self.seed_format)
            code += weight * (missing.astype(np.int64) + absent)
            weight *= 3
        cols["nulls"] = code
        return cols

    def value_columns(self, cols) -> list[np.ndarray]:
        """The values as written: a missing vital counts by its null pattern only."""
        nulls = cols["nulls"]
        out = [cols["score"], nulls]
        for i, name in enumerate(_VITALS):
            if self.seed_format and name != "lcp_ms":
                continue
            present = (nulls // 3**i) % 3 == 0
            out.append(np.where(present, cols["cls_milli" if name == "cls" else name], -1))
        return out

    def make_different(self, cols, mask) -> None:
        score = cols["score"]
        score[mask] = np.where(score[mask] < 100, score[mask] + 1, score[mask] - 1)

    def measured_at(self, ctx, hour, second, tz_code) -> tuple[list[bytes], list[bytes]]:
        prefix = ctx.prefix[hour].tolist()
        suffix = _MMSS_Z[second].tolist()
        if tz_code is not None:
            for i in np.flatnonzero(tz_code).tolist():
                minutes = TZ_OFFSETS[(int(tz_code[i]) - 1) % len(TZ_OFFSETS)]
                utc = ctx.hours[int(hour[i])] + dt.timedelta(seconds=int(second[i]))
                local = utc + dt.timedelta(minutes=minutes)
                sign = "+" if minutes >= 0 else "-"
                hh, mm = divmod(abs(minutes), 60)
                prefix[i] = f"{local:%Y-%m-%dT%H:%M:%S}{sign}{hh:02d}:{mm:02d}".encode()
                suffix[i] = b""
        return prefix, suffix

    def format(self, cols, page, hour, ctx, url_code=None, tz_code=None) -> list[bytes]:
        nulls = cols["nulls"]
        if self.seed_format:
            dates = ctx.ticks[hour] + cols["second"] * timeutil.TICKS_PER_SECOND
            templates = _SEED_PSI_TEMPLATES[(nulls > 0).astype(np.int64)].tolist()
            return list(
                map(
                    bytes.__mod__,
                    templates,
                    zip(
                        dates.tolist(),
                        self.page_numbers[page].tolist(),
                        cols["score"].tolist(),
                        cols["lcp_ms"].tolist(),
                        strict=True,
                    ),
                )
            )
        prefix, suffix = self.measured_at(ctx, hour, cols["second"], tz_code)
        templates = _PSI_TEMPLATES[nulls * 2 + cols["strategy"]].tolist()
        return list(
            map(
                bytes.__mod__,
                templates,
                zip(
                    self.page_strings(page, url_code),
                    prefix,
                    suffix,
                    cols["score"].tolist(),
                    cols["lcp_ms"].tolist(),
                    cols["fcp_ms"].tolist(),
                    cols["inp_ms"].tolist(),
                    cols["ttfb_ms"].tolist(),
                    cols["cls_milli"].tolist(),
                    strict=True,
                ),
            )
        )

    def mutate(self, rec: dict, kind: str, rng: np.random.Generator) -> dict:
        """Make ``rec`` break exactly one contract rule of the given kind."""

        def pick(seq):
            return seq[int(rng.integers(len(seq)))]

        if self.seed_format:
            if kind == "missing_field":
                del rec[pick(("Date", "Page", "PerformanceScore"))]
            elif kind == "wrong_type":
                field = pick(("PerformanceScore", "LCP_MS"))
                rec[field] = _wrong_type(rec[field], rng)
            elif kind == "bad_timestamp":
                rec["Date"] = pick((-int(rng.integers(1, 10**12)), timeutil.MAX_TICKS + 1))
            elif kind == "score_gt_100":
                rec["PerformanceScore"] = int(rng.integers(101, 250))
            elif kind == "negative_vital":
                rec["LCP_MS"] = -int(rng.integers(1, 5000))
            return rec
        if kind == "missing_field":
            del rec[pick(("page", "measured_at", "strategy", "performance_score"))]
        elif kind == "wrong_type":
            field = pick(("performance_score", "lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls"))
            rec[field] = _wrong_type(rec.get(field, 1), rng)
        elif kind == "unknown_strategy":
            rec["strategy"] = pick(("tablet", "phone", "tv", "watch"))
        elif kind == "bad_timestamp":
            rec["measured_at"] = _bad_timestamp(rec["measured_at"], rng)
        elif kind == "bad_url":
            rec["page"] = _bad_url(rec["page"], rng)
        elif kind == "score_gt_100":
            rec["performance_score"] = pick((int(rng.integers(101, 250)), 100.5))
        elif kind == "negative_vital":
            field = pick(_VITALS)
            rec[field] = -0.05 if field == "cls" else -int(rng.integers(1, 5000))
        return rec


def make_source(name: str, catalog: Catalog, seed_format: bool) -> Source:
    return {"ga": GA, "psi": PSI}[name](catalog, seed_format)


def dumps(rec: dict) -> bytes:
    return json.dumps(rec, separators=(",", ":")).encode()
