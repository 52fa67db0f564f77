"""An independent reading of CONTRACT section 1, shared by the tests.

Files are read with ``json``/``ijson``/``gzip`` and records checked with rules
written here from the contract, independently of Metriflow's own parsers and
validators, so that tests compare the code against a second implementation.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import math
import os
from urllib.parse import urlsplit

import ijson

from loadgen import cli

UTC = dt.UTC
TICKS_EPOCH = dt.datetime(1, 1, 1, tzinfo=UTC)
SEED_HOST = "seed.metriflow.local"
GA_COUNTS = ("users", "sessions", "views", "bounces")
VITALS = ("lcp_ms", "fcp_ms", "inp_ms", "ttfb_ms", "cls")


def generate(out, *args: str) -> dict:
    """Run the generator in-process; returns the manifest read from disk."""
    argv = ["--out", str(out), "--no-progress", "--jobs", "1", *args]
    assert cli.main(argv) == 0
    with open(os.path.join(out, "manifest.json"), encoding="utf-8") as f:
        return json.load(f)


def raw_bytes(path) -> bytes:
    path = str(path)
    with open(path, "rb") as f:
        data = f.read()
    return gzip.decompress(data) if path.endswith(".gz") else data


def read_texts(path) -> list[str]:
    """Every record's exact text, for either layout (records never contain newlines)."""
    text = raw_bytes(path).decode("utf-8")
    stripped = text.strip()
    if stripped.startswith("["):
        assert stripped.endswith("]")
        body = stripped[1:-1]
        return [line.rstrip(",") for line in body.split("\n") if line.strip()]
    return [line for line in text.split("\n") if line.strip()]


def read_records(path) -> list[tuple[str, object]]:
    """(text, parsed object) for every record; also checks the whole file parses."""
    data = raw_bytes(path)
    first = data.lstrip()[:1]
    if first == b"[":
        whole = json.loads(data)
        via_ijson = list(ijson.items(io.BytesIO(data), "item", use_float=True))
        assert via_ijson == whole
    else:
        whole = [json.loads(line) for line in data.splitlines() if line.strip()]
    texts = read_texts(path)
    assert len(texts) == len(whole)
    for t, obj in zip(texts, whole, strict=True):
        assert json.loads(t) == obj
    return list(zip(texts, whole, strict=True))


def is_int(v) -> bool:
    return type(v) is int


def is_number(v) -> bool:
    return type(v) in (int, float) and math.isfinite(v)


def parse_iso(value) -> dt.datetime | None:
    """UTC datetime of an ISO-8601 string with Z or an offset, else None."""
    if not isinstance(value, str) or len(value) < 20 or value[10] != "T":
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return None
    return parsed.astimezone(UTC)


def canonical(url: str) -> str:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    port = parts.port
    if port is not None and (scheme, port) not in (("https", 443), ("http", 80)):
        host = f"{host}:{port}"
    path = parts.path or "/"
    if path != "/":
        path = path.rstrip("/") or "/"
    return f"{scheme}://{host}{path}"


def valid_url(value) -> bool:
    if not isinstance(value, str):
        return False
    parts = urlsplit(value)
    return parts.scheme.lower() in ("http", "https") and bool(parts.hostname)


def hour_of(value: dt.datetime) -> dt.datetime:
    return value.replace(minute=0, second=0, microsecond=0)


def ticks_to_dt(value: int) -> dt.datetime:
    return TICKS_EPOCH + dt.timedelta(microseconds=value // 10)


def violations_ga(rec) -> list[str]:
    if not isinstance(rec, dict):
        return ["wrong_type"]
    out = []
    fields = ("page", "hour", *GA_COUNTS, "engagement_seconds")
    if any(f not in rec for f in fields):
        out.append("missing_field")
    if "page" in rec and not valid_url(rec["page"]):
        out.append("bad_url")
    if "hour" in rec and parse_iso(rec["hour"]) is None:
        out.append("bad_timestamp")
    for f in GA_COUNTS:
        if f in rec:
            if not is_int(rec[f]):
                out.append("wrong_type")
            elif rec[f] < 0:
                out.append("negative_count")
    if "engagement_seconds" in rec:
        if not is_number(rec["engagement_seconds"]):
            out.append("wrong_type")
        elif rec["engagement_seconds"] < 0:
            out.append("negative_count")
    b, s = rec.get("bounces"), rec.get("sessions")
    if is_int(b) and is_int(s) and b >= 0 and s >= 0 and b > s:
        out.append("bounces_gt_sessions")
    return out


def violations_psi(rec) -> list[str]:
    if not isinstance(rec, dict):
        return ["wrong_type"]
    out = []
    if any(f not in rec for f in ("page", "measured_at", "strategy", "performance_score")):
        out.append("missing_field")
    if "page" in rec and not valid_url(rec["page"]):
        out.append("bad_url")
    if "measured_at" in rec and parse_iso(rec["measured_at"]) is None:
        out.append("bad_timestamp")
    if "strategy" in rec and rec["strategy"] not in ("mobile", "desktop"):
        out.append("unknown_strategy")
    if "performance_score" in rec:
        score = rec["performance_score"]
        if not is_number(score):
            out.append("wrong_type")
        elif score > 100:
            out.append("score_gt_100")
        elif score < 0:
            out.append("score_lt_0")
    for f in VITALS:
        if rec.get(f) is not None:
            if not is_number(rec[f]):
                out.append("wrong_type")
            elif rec[f] < 0:
                out.append("negative_vital")
    return out


def violations_seed_ga(rec) -> list[str]:
    out = []
    if "Date" not in rec or "Page" not in rec:
        out.append("missing_field")
    if "Date" in rec:
        if not is_int(rec["Date"]):
            out.append("wrong_type")
        elif not 0 <= rec["Date"] <= 3_155_378_975_999_999_999:
            out.append("bad_timestamp")
    if "Page" in rec and not is_int(rec["Page"]):
        out.append("wrong_type")
    for f in ("Users", "Views", "Sessions"):
        if f in rec:
            if not is_int(rec[f]):
                out.append("wrong_type")
            elif rec[f] < 0:
                out.append("negative_count")
    return out


def violations_seed_psi(rec) -> list[str]:
    out = []
    if any(f not in rec for f in ("Date", "Page", "PerformanceScore")):
        out.append("missing_field")
    if "Date" in rec:
        if not is_int(rec["Date"]):
            out.append("wrong_type")
        elif not 0 <= rec["Date"] <= 3_155_378_975_999_999_999:
            out.append("bad_timestamp")
    if "PerformanceScore" in rec:
        if not is_number(rec["PerformanceScore"]):
            out.append("wrong_type")
        elif rec["PerformanceScore"] > 100:
            out.append("score_gt_100")
    if rec.get("LCP_MS") is not None:
        if not is_number(rec["LCP_MS"]):
            out.append("wrong_type")
        elif rec["LCP_MS"] < 0:
            out.append("negative_vital")
    return out


def violations(source: str, fmt: str, rec) -> list[str]:
    table = {
        ("ga", "contract"): violations_ga,
        ("psi", "contract"): violations_psi,
        ("ga", "seed"): violations_seed_ga,
        ("psi", "seed"): violations_seed_psi,
    }
    return table[(source, fmt)](rec)


def natural_key(source: str, fmt: str, rec) -> tuple:
    if fmt == "seed":
        page = f"https://{SEED_HOST}/page/{rec['Page']}"
        hour = hour_of(ticks_to_dt(rec["Date"]))
        return (page, hour) if source == "ga" else (page, hour, "desktop")
    if source == "ga":
        return canonical(rec["page"]), hour_of(parse_iso(rec["hour"]))
    return canonical(rec["page"]), hour_of(parse_iso(rec["measured_at"])), rec["strategy"]


def values(source: str, fmt: str, rec) -> tuple:
    """The non-key values of a record (what a correction changes)."""
    if fmt == "seed":
        skip = {"Date", "Page"}
    else:
        skip = {"page", "hour"} if source == "ga" else {"page", "measured_at", "strategy"}
    return tuple(sorted((k, v) for k, v in rec.items() if k not in skip))
