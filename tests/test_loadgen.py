"""Tests of the load generator (``python -m loadgen``).

The written files are read back with ``json``/``ijson``/``gzip`` and checked with a
small validator of the contract's input rules written here, independently of the
generator's own code. No database is needed, except by the last test, which
ingests a file of each Google format beside its contract twin.
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import math
import os
import tempfile
import zoneinfo
from collections import Counter, defaultdict
from fractions import Fraction
from urllib.parse import urlsplit

import ijson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from loadgen import cli

from .contract import (
    UTC,
    canonical,
    generate,
    hour_of,
    natural_key,
    parse_iso,
    raw_bytes,
    read_records,
    read_texts,
    ticks_to_dt,
    values,
    violations,
    violations_psi,
    violations_seed_ga,
    violations_seed_psi,
)


def expected_keys(manifest: dict, source: str) -> set:
    """The full grid of natural keys, from the manifest's page URLs and hours."""
    n = manifest["records_per_source"]
    pages = manifest["pages"]
    first = parse_iso(manifest["hours"]["first"])
    return {(i % pages, first + dt.timedelta(hours=i // pages)) for i in range(n)}


def floor_share(fraction: str, n: int) -> int:
    return math.floor(Fraction(fraction) * n)


def file_entry(manifest: dict, source: str, role: str = "main") -> dict:
    [entry] = [f for f in manifest["files"] if f["source"] == source and f["role"] == role]
    return entry


# --------------------------------------------------------------------------- tests


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("clean")
    manifest = generate(
        out,
        "--records", "2470", "--pages", "40", "--sites", "4",
        "--chunk-records", "300", "--url-variants", "0.1", "--tz-offsets", "0.1",
    )  # fmt: skip
    return out, manifest


def test_files_and_manifest(clean_run):
    out, manifest = clean_run
    names = sorted(os.listdir(out))
    assert names == ["ga.json", "manifest.json", "psi.json"]
    assert manifest["hours"] == {
        "first": "2024-01-01T00:00:00Z",
        "last": "2024-01-03T13:00:00Z",  # ceil(2470 / 40) = 62 hours
        "count": 62,
        "last_hour_pages": 30,
    }
    for entry in manifest["files"]:
        path = out / entry["file"]
        assert entry["bytes"] == os.path.getsize(path)
        assert entry["uncompressed_bytes"] == len(raw_bytes(path))
        assert entry["records"] == len(read_texts(path)) == 2470
        assert entry["first_hour"] == "2024-01-01T00:00:00Z"
        assert entry["last_hour"] == "2024-01-03T13:00:00Z"
    assert manifest["arguments"]["records"] == 2470
    assert len(manifest["sites"]) == 4


@pytest.mark.parametrize("source", ["ga", "psi"])
def test_clean_records_follow_the_contract(clean_run, source):
    out, manifest = clean_run
    records = read_records(out / f"{source}.json")
    keys = []
    for _text, rec in records:
        assert violations(source, "contract", rec) == [], rec
        keys.append(natural_key(source, "contract", rec))
    # One record per page per hour, ordered by hour then page.
    pages_in_order = [k[0] for k in keys[:40]]
    assert len(set(pages_in_order)) == 40
    page_index = {p: i for i, p in enumerate(pages_in_order)}
    first = dt.datetime(2024, 1, 1, tzinfo=UTC)
    grid = [(page_index[k[0]], k[1]) for k in keys]
    assert grid == sorted(grid, key=lambda g: (g[1], g[0]))
    assert len(set(grid)) == len(grid) == 2470
    assert set(grid) == expected_keys(manifest, source)
    assert grid[-1] == (29, first + dt.timedelta(hours=61))
    # Sites: 4 hosts, each with a root page.
    hosts = {urlsplit(p).hostname for p in pages_in_order}
    assert hosts == set(manifest["sites"])
    assert {p for p in pages_in_order if urlsplit(p).path == "/"} == {
        f"https://{h}/" for h in hosts
    }


def test_url_variants_and_offsets_are_equivalent(clean_run):
    out, manifest = clean_run
    for source in ("ga", "psi"):
        records = read_records(out / f"{source}.json")
        pages = [rec["page"] for _t, rec in records]
        noncanonical = [p for p in pages if canonical(p) != p]
        assert len(noncanonical) == file_entry(manifest, source)["url_variants"]
        assert 0.05 * len(pages) < len(noncanonical) < 0.16 * len(pages)
        assert {canonical(p) for p in pages} == {canonical(p) for p in pages[:40]}
        assert not any(p.endswith("//") or "//?" in p for p in pages)
    psi = [rec for _t, rec in read_records(out / "psi.json")]
    shifted = [r["measured_at"] for r in psi if not r["measured_at"].endswith("Z")]
    assert len(shifted) == file_entry(manifest, "psi")["offset_timestamps"] > 0
    # The hour of record i is hour i // pages, whatever the offset.
    first = dt.datetime(2024, 1, 1, tzinfo=UTC)
    for i, rec in enumerate(psi):
        assert hour_of(parse_iso(rec["measured_at"])) == first + dt.timedelta(hours=i // 40)


def test_psi_values_are_plausible(tmp_path):
    manifest = generate(tmp_path, "--records", "20000", "--pages", "50", "--sources", "psi")
    assert [f["file"] for f in manifest["files"]] == ["psi.json"]
    recs = [rec for _t, rec in read_records(tmp_path / "psi.json")]
    mobile = [r for r in recs if r["strategy"] == "mobile"]
    assert 0.5 < len(mobile) / len(recs) < 0.6

    def median(strategy, field):
        vals = sorted(
            r[field] for r in recs if r["strategy"] == strategy and r.get(field) is not None
        )
        return vals[len(vals) // 2]

    assert 1800 < median("mobile", "lcp_ms") < 2900
    assert 1200 < median("desktop", "lcp_ms") < 2000
    assert median("mobile", "fcp_ms") > median("desktop", "fcp_ms")
    assert median("mobile", "inp_ms") > median("desktop", "inp_ms")
    assert median("mobile", "ttfb_ms") > median("desktop", "ttfb_ms")
    cls = [r["cls"] for r in recs if r.get("cls") is not None]
    assert sum(c < 0.1 for c in cls) > 0.75 * len(cls)
    assert max(cls) <= 0.6 and max(cls) > 0.3
    inp_missing = sum(r.get("inp_ms") is None for r in recs) / len(recs)
    assert 0.07 < inp_missing < 0.13
    assert any("inp_ms" not in r for r in recs) and any(
        "inp_ms" in r and r["inp_ms"] is None for r in recs
    )
    # Slow tail: some measurements far above the median.
    lcp = sorted(r["lcp_ms"] for r in mobile if r.get("lcp_ms") is not None)
    assert lcp[int(len(lcp) * 0.99)] > 3 * lcp[len(lcp) // 2]
    # The score goes down when LCP goes up.
    fast = [
        r["performance_score"] for r in recs if r.get("lcp_ms") is not None and r["lcp_ms"] < 1200
    ]
    slow = [
        r["performance_score"] for r in recs if r.get("lcp_ms") is not None and r["lcp_ms"] > 4000
    ]
    assert sum(fast) / len(fast) > sum(slow) / len(slow) + 20
    assert all(0 <= r["performance_score"] <= 100 for r in recs)


def test_ga_traffic_shape(tmp_path):
    pages, days = 50, 14
    generate(tmp_path, "--records", str(pages * 24 * days), "--pages", str(pages),
             "--sources", "ga", "--url-variants", "0")  # fmt: skip
    recs = [rec for _t, rec in read_records(tmp_path / "ga.json")]
    views = defaultdict(int)
    by_hour_of_day = defaultdict(int)
    by_weekday = defaultdict(int)
    for r in recs:
        assert r["bounces"] <= r["sessions"]
        assert r["users"] <= r["sessions"] <= r["views"]
        assert r["engagement_seconds"] >= 0
        assert r["sessions"] > 0 or r["engagement_seconds"] == 0
        views[r["page"]] += r["views"]
        when = parse_iso(r["hour"])
        by_hour_of_day[when.hour] += r["users"]
        by_weekday[when.weekday()] += r["users"]
    ranked = sorted(views.values(), reverse=True)
    assert ranked[0] > 10 * ranked[len(ranked) // 2]  # Zipf-like popularity
    assert sum(ranked[:5]) > 0.4 * sum(ranked)
    afternoon = sum(by_hour_of_day[h] for h in range(13, 18))
    night = sum(by_hour_of_day[h] for h in range(1, 6))
    assert afternoon > 2.5 * night
    weekday = sum(by_weekday[d] for d in range(5)) / 5
    weekend = (by_weekday[5] + by_weekday[6]) / 2
    assert weekend < 0.85 * weekday
    total_sessions = sum(r["sessions"] for r in recs)
    bounce_rate = sum(r["bounces"] for r in recs) / total_sessions
    assert 0.2 < bounce_rate < 0.7


@pytest.mark.parametrize(
    "layout_args, suffix",
    [(["--layout", "ndjson"], ".ndjson"), (["--gzip"], ".json.gz"),
     (["--layout", "ndjson", "--gzip", "--gzip-level", "6"], ".ndjson.gz")],
)  # fmt: skip
def test_layouts_hold_the_same_records(tmp_path, clean_run, layout_args, suffix):
    base_out, _ = clean_run
    args = ["--records", "2470", "--pages", "40", "--sites", "4", "--chunk-records", "300",
            "--url-variants", "0.1", "--tz-offsets", "0.1"]  # fmt: skip
    manifest = generate(tmp_path, *args, *layout_args)
    for source in ("ga", "psi"):
        path = tmp_path / f"{source}{suffix}"
        assert file_entry(manifest, source)["file"] == path.name
        if suffix.endswith(".gz"):
            with open(path, "rb") as f:
                assert f.read(2) == b"\x1f\x8b"
        got = read_records(path)
        want = read_records(base_out / f"{source}.json")
        assert [t for t, _ in got] == [t for t, _ in want]
        if "ndjson" in suffix:
            assert raw_bytes(path).count(b"\n") == 2470


def test_array_layout_is_like_the_original(clean_run):
    out, _ = clean_run
    data = raw_bytes(out / "ga.json")
    assert data.startswith(b'[{"page":')
    assert data.rstrip(b"\n").endswith(b"}]")
    assert data.count(b"},\n{") == 2469


def test_seed_format(tmp_path):
    manifest = generate(tmp_path, "--records", "500", "--pages", "20", "--format", "seed",
                        "--start", "2024-02-28T22:00:00Z")  # fmt: skip
    first = dt.datetime(2024, 2, 28, 22, tzinfo=UTC)
    ga = [rec for _t, rec in read_records(tmp_path / "ga.json")]
    psi = [rec for _t, rec in read_records(tmp_path / "psi.json")]
    assert len(ga) == len(psi) == 500
    for i, rec in enumerate(ga):
        assert set(rec) == {"Date", "Page", "Users", "Views", "Sessions"}
        assert violations_seed_ga(rec) == []
        assert rec["Page"] == i % 20 + 1
        assert ticks_to_dt(rec["Date"]) == first + dt.timedelta(hours=i // 20)
        assert rec["Date"] % 36_000_000_000 == 0
        assert rec["Sessions"] >= rec["Users"] and rec["Views"] >= rec["Sessions"]
    # new DateTime(2024, 1, 1).Ticks == 638396640000000000; then 58 days and 22 hours.
    assert ga[0]["Date"] == 638396640000000000 + (58 * 24 + 22) * 36_000_000_000
    for i, rec in enumerate(psi):
        assert set(rec) == {"Date", "Page", "PerformanceScore", "LCP_MS"}
        assert violations_seed_psi(rec) == []
        assert hour_of(ticks_to_dt(rec["Date"])) == first + dt.timedelta(hours=i // 20)
    assert manifest["hours"]["last"] == "2024-02-29T22:00:00Z"  # 25 hours, leap day


@pytest.mark.parametrize("fmt", ["contract", "seed"])
def test_faults(tmp_path, fmt):
    n = 3000
    fractions = {"duplicates": "0.03", "corrections": "0.04", "late": "0.05", "malformed": "0.06"}
    args = ["--records", str(n), "--pages", "25", "--sites", "3", "--chunk-records", "400",
            "--format", fmt]  # fmt: skip
    for name, value in fractions.items():
        args += [f"--{name}", value]
    manifest = generate(tmp_path / "faults", *args)
    clean = generate(tmp_path / "clean", "--records", str(n), "--pages", "25", "--sites", "3",
                     "--chunk-records", "400", "--format", fmt)  # fmt: skip
    want = {k: floor_share(v, n) for k, v in fractions.items()}
    suffix = ".json"
    for source in ("ga", "psi"):
        main = read_records(tmp_path / "faults" / f"{source}{suffix}")
        late = read_records(tmp_path / "faults" / f"{source}_late{suffix}")
        entry = file_entry(manifest, source)
        assert (
            entry["records"]
            == len(main)
            == n - want["late"] + sum(want[k] for k in ("duplicates", "corrections", "malformed"))
        )

        # Malformed: each breaks exactly one rule; counts per kind as in the manifest.
        bad = [(t, r) for t, r in main if violations(source, fmt, r)]
        good = [(t, r) for t, r in main if not violations(source, fmt, r)]
        assert len(bad) == want["malformed"]
        kinds = Counter()
        for _t, rec in bad:
            found = violations(source, fmt, rec)
            assert len(found) == 1, (rec, found)
            kinds[found[0]] += 1
        assert dict(kinds) == entry["faults"]["malformed_by_kind"]
        assert max(kinds.values()) - min(kinds.values()) <= 1
        expected_kinds = {
            ("ga", "contract"): 6, ("psi", "contract"): 7, ("ga", "seed"): 4, ("psi", "seed"): 5,
        }[(source, fmt)]  # fmt: skip
        assert len(kinds) == expected_kinds

        # Duplicates: exact repeats of earlier records.
        counts = Counter(t for t, _r in good)
        assert sum(c - 1 for c in counts.values()) == want["duplicates"]
        assert entry["faults"]["duplicates"] == want["duplicates"]

        # Corrections: same key, other values, later; old values never come back.
        seen: dict[tuple, list] = defaultdict(list)
        corrections = 0
        for _t, rec in good:
            key = natural_key(source, fmt, rec)
            vals = values(source, fmt, rec)
            history = seen[key]
            if history and vals != history[-1]:
                corrections += 1
                assert vals not in history
            history.append(vals)
        assert corrections == want["corrections"] == entry["faults"]["corrections"]

        # Late: withheld keys only, every one of their hours is present in the main file.
        assert len(late) == want["late"] == entry["faults"]["late_withheld"]
        main_keys = set(seen)
        main_hours = {k[1] for k in main_keys}
        late_keys = [natural_key(source, fmt, r) for _t, r in late]
        assert all(not violations(source, fmt, r) for _t, r in late)
        assert not set(late_keys) & main_keys
        assert {k[1] for k in late_keys} <= main_hours
        late_hours = [k[1] for k in late_keys]
        assert late_hours == sorted(late_hours)
        late_entry = file_entry(manifest, source, "late")
        assert late_entry["records"] == len(late)

        # main + late, last one wins: exactly N keys, equal to the clean run except the
        # corrected keys.
        final: dict[tuple, tuple] = {}
        for _t, rec in [*good, *late]:
            final[natural_key(source, fmt, rec)] = values(source, fmt, rec)
        assert len(final) == n
        reference = {
            natural_key(source, fmt, r): values(source, fmt, r)
            for _t, r in read_records(tmp_path / "clean" / f"{source}{suffix}")
        }
        assert set(reference) == set(final)
        changed = [k for k in final if final[k] != reference[k]]
        assert len(changed) == want["corrections"]
    assert file_entry(clean, "ga")["faults"]["duplicates"] == 0


def test_fault_counts_are_exact_for_awkward_fractions(tmp_path):
    n = 1001
    manifest = generate(tmp_path, "--records", str(n), "--pages", "7", "--chunk-records", "50",
                        "--duplicates", "0.29", "--corrections", "0.07", "--late", "0.13",
                        "--malformed", "0.011", "--sources", "ga")  # fmt: skip
    entry = file_entry(manifest, "ga")
    assert entry["faults"]["duplicates"] == 290
    assert entry["faults"]["corrections"] == 70
    assert entry["faults"]["late_withheld"] == 130
    assert entry["faults"]["malformed"] == 11
    assert entry["records"] == n - 130 + 290 + 70 + 11
    assert len(read_texts(tmp_path / "ga.json")) == entry["records"]
    assert len(read_texts(tmp_path / "ga_late.json")) == 130


@pytest.mark.parametrize("layout_args", [[], ["--layout", "ndjson", "--gzip"]])
def test_truncation(tmp_path, layout_args):
    manifest = generate(tmp_path, "--records", "1500", "--pages", "30", "--truncate", "0.37",
                        "--malformed", "0.01", *layout_args)  # fmt: skip
    for source in ("ga", "psi"):
        entry = file_entry(manifest, source)
        cut = entry["truncation"]
        path = tmp_path / entry["file"]
        data = raw_bytes(path)
        assert len(data) == cut["offset"]
        assert abs(cut["offset"] - 0.37 * cut["uncompressed_bytes_before"]) < 1000
        assert cut["offset"] < entry["uncompressed_bytes"]
        # The file is no longer valid JSON, and it stops inside a record.
        if data.startswith(b"["):
            with pytest.raises(json.JSONDecodeError):
                json.loads(data)
            items = []
            with pytest.raises(ijson.JSONError):
                for item in ijson.items(io.BytesIO(data), "item"):
                    items.append(item)
            assert len(items) == cut["complete_records"]
        else:
            lines = data.split(b"\n")
            for line in lines[:-1]:
                json.loads(line)
            with pytest.raises(json.JSONDecodeError):
                json.loads(lines[-1])
            assert len(lines) - 1 == cut["complete_records"]
        tail = data[data.rfind(b"{") :]
        assert b"}" not in tail and len(tail) >= 1
        if path.name.endswith(".gz"):
            with gzip.open(path) as f:  # a valid gzip stream of the cut bytes
                assert f.read() == data


def test_determinism(tmp_path):
    args = ["--records", "900", "--pages", "30", "--duplicates", "0.02", "--corrections", "0.02",
            "--late", "0.02", "--malformed", "0.02", "--chunk-records", "200"]  # fmt: skip
    generate(tmp_path / "a", *args)
    generate(tmp_path / "b", *args)
    # GA and PSI written by two processes: same bytes as in one process.
    assert cli.main(["--out", str(tmp_path / "c"), "--no-progress", "--jobs", "2", *args]) == 0
    generate(tmp_path / "d", *args[:-2], "--chunk-records", "200", "--seed", "2")
    names = ["ga.json", "psi.json", "ga_late.json", "psi_late.json"]
    for name in names:
        a = (tmp_path / "a" / name).read_bytes()
        assert a == (tmp_path / "b" / name).read_bytes()
        assert a == (tmp_path / "c" / name).read_bytes()
        assert a != (tmp_path / "d" / name).read_bytes()

    def manifest_without_paths(d):
        m = json.loads((tmp_path / d / "manifest.json").read_text())
        m["arguments"].pop("out")
        for f in m["files"]:
            f.pop("path")
        return m

    assert manifest_without_paths("a") == manifest_without_paths("c")


def test_start_and_partial_last_hour(tmp_path):
    manifest = generate(tmp_path, "--records", "95", "--pages", "10",
                        "--start", "2024-03-31T01:45:00+02:00", "--sources", "ga")  # fmt: skip
    recs = [rec for _t, rec in read_records(tmp_path / "ga.json")]
    assert recs[0]["hour"] == "2024-03-30T23:00:00Z"
    assert recs[-1]["hour"] == "2024-03-31T08:00:00Z"
    assert len([r for r in recs if r["hour"] == "2024-03-31T08:00:00Z"]) == 5
    assert manifest["hours"]["count"] == 10


def test_stale_late_file_is_removed(tmp_path):
    generate(tmp_path, "--records", "200", "--pages", "10", "--late", "0.1")
    assert (tmp_path / "ga_late.json").exists()
    manifest = generate(tmp_path, "--records", "200", "--pages", "10")
    assert not (tmp_path / "ga_late.json").exists()
    assert [f["file"] for f in manifest["files"]] == ["ga.json", "psi.json"]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".part")]


@pytest.mark.parametrize(
    "argv",
    [
        ["--records", "0"],
        ["--duplicates", "1.5"],
        ["--sources", "ga,xyz"],
        ["--layout", "csv"],
        ["--start", "yesterday"],
        ["--duplicates", "0.3", "--corrections", "0.3"],
        ["--pages", "1", "--late", "0.1"],
        ["--seed", "-1"],
    ],
)
def test_invalid_arguments(tmp_path, argv, capsys):
    try:
        code = cli.main(["--out", str(tmp_path), "--no-progress", *argv])
    except SystemExit as exc:  # argparse errors
        code = exc.code
    assert code == 2
    assert "error" in capsys.readouterr().err
    assert not (tmp_path / "ga.json").exists()


def test_parser_and_run_for_wrappers(tmp_path):
    parser = cli.build_parser()
    args = parser.parse_args(["--out", str(tmp_path), "--records", "50", "--pages", "5",
                              "--no-progress", "--sources", "psi"])  # fmt: skip
    manifest = cli.run(args)
    assert manifest["files"][0]["path"] == os.path.join(str(tmp_path), "psi.json")
    assert manifest["arguments"]["sources"] == ["psi"]
    assert json.loads((tmp_path / "manifest.json").read_text()) == manifest
    assert parser.get_default("out") == "data/"
    assert parser.get_default("records") == 100_000


@settings(max_examples=25, deadline=None, database=None)
@given(
    records=st.integers(1, 400),
    pages=st.integers(2, 30),
    chunk=st.integers(1, 120),
    dup=st.sampled_from(["0", "0.05", "0.1", "0.17"]),
    corr=st.sampled_from(["0", "0.05", "0.13"]),
    late=st.sampled_from(["0", "0.1", "0.2"]),
    bad=st.sampled_from(["0", "0.03", "0.5"]),
)
def test_fault_invariants_hold_for_any_shape(records, pages, chunk, dup, corr, late, bad):
    with tempfile.TemporaryDirectory() as out:
        argv = ["--records", str(records), "--pages", str(pages), "--chunk-records", str(chunk),
                "--duplicates", dup, "--corrections", corr, "--late", late, "--malformed", bad,
                "--sources", "psi"]  # fmt: skip
        manifest = generate(out, *argv)
        main = read_records(os.path.join(out, "psi.json"))
        late_path = os.path.join(out, "psi_late.json")
        late_recs = read_records(late_path) if late != "0" else []
        good = [r for _t, r in main if not violations_psi(r)]
        assert len(main) - len(good) == floor_share(bad, records)
        assert len(late_recs) == floor_share(late, records)
        texts = Counter(t for t, r in main if not violations_psi(r))
        assert sum(c - 1 for c in texts.values()) == floor_share(dup, records)
        final = {}
        for rec in [*good, *(r for _t, r in late_recs)]:
            final[natural_key("psi", "contract", rec)] = rec
        assert len(final) == records
        assert file_entry(manifest, "psi")["faults"]["corrections"] == floor_share(corr, records)


# --- The Google formats: the same records as the contract format ----------------------

GA4_METRICS = ("activeUsers", "sessions", "screenPageViews", "userEngagementDuration",
               "engagedSessions")  # fmt: skip
PSI_AUDITS = {
    "lcp_ms": "largest-contentful-paint",
    "fcp_ms": "first-contentful-paint",
    "inp_ms": "interaction-to-next-paint",
    "ttfb_ms": "server-response-time",
    "cls": "cumulative-layout-shift",
}


def contract_ga(path) -> list[tuple]:
    return [
        (r["page"], parse_iso(r["hour"]), r["users"], r["sessions"], r["views"], r["bounces"],
         float(r["engagement_seconds"]))
        for _t, r in read_records(path)
    ]  # fmt: skip


def decode_ga4(path) -> tuple[list[tuple], list[dict]]:
    """Records of a runReport file, mapped here: headers by name, dateHour in the zone."""
    records, responses = [], []
    for _t, response in read_records(path):
        responses.append(response)
        dims = [h["name"] for h in response["dimensionHeaders"]]
        mets = [h["name"] for h in response["metricHeaders"]]
        zone = zoneinfo.ZoneInfo(response["metadata"]["timeZone"])
        for row in response.get("rows", []):
            d = dict(zip(dims, (v["value"] for v in row["dimensionValues"]), strict=True))
            m = dict(zip(mets, (v["value"] for v in row["metricValues"]), strict=True))
            local = dt.datetime.strptime(d["dateHour"], "%Y%m%d%H").replace(tzinfo=zone)
            hour = hour_of(local.astimezone(UTC))
            sessions = int(m["sessions"])
            records.append(
                (d["pageLocation"], hour, int(m["activeUsers"]), sessions,
                 int(m["screenPageViews"]), sessions - int(m["engagedSessions"]),
                 float(m["userEngagementDuration"]))
            )  # fmt: skip
    return records, responses


@pytest.mark.parametrize(
    ("zone", "start"),
    [
        ("Asia/Kolkata", "2024-01-01T00:00:00Z"),  # half-hour zone: local hours start at :30
        ("America/New_York", "2024-03-09T18:00:00Z"),  # across the missing hour (spring)
        ("Europe/Berlin", "2024-03-30T20:00:00Z"),
        ("UTC", "2024-06-01T00:00:00Z"),
    ],
)
@pytest.mark.parametrize("layout", ["ndjson", "array"])
def test_ga4_files_hold_the_contract_records(tmp_path, zone, start, layout):
    common = ["--records", "1300", "--pages", "37", "--start", start, "--seed", "5",
              "--layout", layout, "--late", "0.1", "--duplicates", "0.02",
              "--corrections", "0.03", "--url-variants", "0.2", "--sources", "ga"]  # fmt: skip
    generate(tmp_path / "c", *common)
    manifest = generate(tmp_path / "g", *common, "--format", "ga4", "--time-zone", zone,
                        "--ga4-page-rows", "100")  # fmt: skip
    ext = "ndjson" if layout == "ndjson" else "json"
    for role, name in (("main", "ga4"), ("late", "ga4_late")):
        expected = contract_ga(tmp_path / "c" / f"{name.replace('ga4', 'ga')}.{ext}")
        got, responses = decode_ga4(tmp_path / "g" / f"{name}.{ext}")
        assert got == expected
        assert {r["rowCount"] for r in responses} == {len(expected)}
        assert [len(r["rows"]) for r in responses[:-1]] == [100] * (len(responses) - 1)
        assert {r["kind"] for r in responses} == {"analyticsData#runReport"}
        assert {r["metadata"]["timeZone"] for r in responses} == {zone}
        assert [h["name"] for h in responses[0]["metricHeaders"]] == list(GA4_METRICS)
        entry = file_entry(manifest, "ga", role)
        assert (entry["records"], entry["responses"]) == (len(expected), len(responses))


def test_ga4_refuses_an_hour_that_shares_its_local_hour(tmp_path):
    """After a clock change back two UTC hours have one local hour: GA4 would merge them."""
    with pytest.raises(ValueError, match="shares its local hour 2024-10-27 02:00"):
        cli.run(cli.build_parser().parse_args(
            ["--out", str(tmp_path), "--records", "48", "--pages", "2", "--no-progress",
             "--start", "2024-10-26T20:00:00Z", "--format", "ga4",
             "--time-zone", "Europe/Berlin"]
        ))  # fmt: skip


def test_google_formats_refuse_what_does_not_apply(tmp_path):
    def run(*argv):
        return cli.run(cli.build_parser().parse_args(
            ["--out", str(tmp_path), "--records", "10", "--no-progress", *argv]
        ))  # fmt: skip

    with pytest.raises(ValueError, match="writes the ga source only"):
        run("--format", "ga4", "--sources", "psi")
    with pytest.raises(ValueError, match="--malformed and --truncate do not apply"):
        run("--format", "psi", "--malformed", "0.1")
    with pytest.raises(ValueError, match="not an IANA time zone"):
        run("--format", "ga4", "--time-zone", "Mars/Olympus")


def decode_psi(path) -> list[tuple]:
    out = []
    for _t, response in read_records(path):
        lh = response["lighthouseResult"]
        audits = lh["audits"]
        vitals = tuple(audits.get(a, {}).get("numericValue") for a in PSI_AUDITS.values())
        out.append(
            (lh["finalUrl"], parse_iso(lh["fetchTime"]), lh["configSettings"]["formFactor"],
             round(lh["categories"]["performance"]["score"] * 100, 6), *vitals)
        )  # fmt: skip
    return out


def test_psi_v5_files_hold_the_contract_records_at_a_real_size(tmp_path):
    common = ["--records", "60", "--pages", "13", "--seed", "9", "--layout", "ndjson",
              "--url-variants", "0.3", "--tz-offsets", "0.3", "--late", "0.1",
              "--corrections", "0.1", "--sources", "psi"]  # fmt: skip
    generate(tmp_path / "c", *common)
    manifest = generate(tmp_path / "g", *common, "--format", "psi")
    for role, name in (("main", "psi"), ("late", "psi_late")):
        expected = [
            (r["page"], parse_iso(r["measured_at"]), r["strategy"],
             float(r["performance_score"]), *(r.get(v) for v in PSI_AUDITS))
            for _t, r in read_records(tmp_path / "c" / f"{name}.ndjson")
        ]  # fmt: skip
        path = tmp_path / "g" / f"{name.replace('psi', 'psi-v5')}.ndjson"
        assert decode_psi(path) == expected
        assert file_entry(manifest, "psi", role)["records"] == len(expected)
        lines = raw_bytes(path).splitlines()
        # Real responses are 0.3-1 MB, mostly the bulk a reader must skip.
        assert all(300_000 <= len(line) <= 1_000_000 for line in lines)
        response = json.loads(lines[0])
        audits = response["lighthouseResult"]["audits"]
        assert len(audits["network-requests"]["details"]["items"]) >= 40
        thumbs = audits["screenshot-thumbnails"]["details"]["items"]
        assert all(t["data"].startswith("data:image/webp;base64,") for t in thumbs)
        screenshot = response["lighthouseResult"]["fullPageScreenshot"]["screenshot"]["data"]
        assert len(screenshot) >= 150_000
        assert {"speed-index", "total-blocking-time", "metrics", "main-thread-tasks",
                "final-screenshot", "script-treemap-data"} <= set(audits)  # fmt: skip


def _raw_rows(source: str, batch_id: int) -> list[tuple]:
    from django.db import connection

    columns = {
        "ga": "r.hour, r.users, r.sessions, r.views, r.bounces, r.engagement_seconds",
        "psi": "r.measured_at, r.strategy, round(r.performance_score::numeric, 6)::float8, "
        "r.lcp_ms, r.fcp_ms, r.inp_ms, r.ttfb_ms, r.cls",
    }[source]
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT r.position, p.url, {columns} FROM raw_{source} r "
            "JOIN page p ON p.id = r.page_id WHERE r.batch_id = %s ORDER BY r.position",
            [batch_id],
        )
        return cursor.fetchall()


@pytest.mark.usefixtures("pipeline_db")
@pytest.mark.parametrize(
    ("source", "google", "extra"),
    [
        ("ga", "ga4", ["--time-zone", "Asia/Kolkata", "--ga4-page-rows", "128"]),
        ("psi", "psi", []),
    ],
)
def test_google_files_ingest_to_the_rows_of_their_contract_twin(tmp_path, source, google, extra):
    """Generated in a Google format and ingested with --format ga4|psi, a data set loads the
    same raw rows, position by position, as the contract file of the same arguments."""
    from pipeline.ingest import ingest_file

    records = "700" if source == "ga" else "40"
    common = ["--records", records, "--pages", "17", "--seed", "4", "--layout", "ndjson",
              "--url-variants", "0.2", "--duplicates", "0.02", "--corrections", "0.05",
              "--sources", source]  # fmt: skip
    generate(tmp_path / "c", *common)
    manifest = generate(tmp_path / "g", *common, "--format", google, *extra)
    twin = ingest_file(str(tmp_path / "c" / f"{source}.ndjson"))
    got = ingest_file(file_entry(manifest, source)["path"], file_format=google)
    assert (twin.status, got.status) == ("loaded", "loaded")
    assert got.accepted == twin.accepted and got.rejected == twin.rejected == 0
    assert _raw_rows(source, got.batch_id) == _raw_rows(source, twin.batch_id)
