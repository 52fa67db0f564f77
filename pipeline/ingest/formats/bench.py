"""Google formats against the contract format: ``python -m pipeline.ingest.formats.bench``.

Writes a GA4 ``runReport`` file (responses of ``--rows-per-response`` rows,
compact and indented), the contract GA file of the same records, a PSI v5 file
of ``--psi`` responses of real size (indented, as the API sends them; and
NDJSON) and a contract PSI file of those records repeated (``--psi-contract``
records, enough to time); ingests each with
``ingest_file`` into the database of ``DATABASE_URL`` (``--force``, so it can
be rerun) and prints records/s and MB/s of each, and the ratio to the contract
file of its source. Ingest is timed whole: reading, mapping, pages, COPY.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import orjson


def _contract_ga(ga4_path: Path, out: Path) -> None:
    """The contract GA records of a GA4 file, as a JSON array, one record a line."""
    from ..readers import detect_layout, open_stream
    from .ga4 import Ga4Reader

    with open_stream(str(ga4_path)) as stream, open(out, "wb") as handle:
        reader = Ga4Reader(str(ga4_path), stream, detect_layout(stream))
        handle.write(b"[\n")
        first = True
        for chunk in reader.chunks():
            for page, hour, users, sessions, views, bounces, engagement in chunk.records:
                record = {
                    "page": page, "hour": hour, "users": users, "sessions": sessions,
                    "views": views, "bounces": bounces, "engagement_seconds": engagement,
                }  # fmt: skip
                handle.write((b"" if first else b",\n") + orjson.dumps(record))
                first = False
        handle.write(b"\n]\n")


def _contract_psi(psi_path: Path, out: Path, records: int) -> None:
    """``records`` contract PSI records: those of the PSI v5 file, again and again, each
    pass an hour later (a contract file of one record per response is too small to time)."""
    from ..readers import detect_layout, open_stream
    from .psi import read_chunks

    names = ("page", "measured_at", "strategy", "performance_score", "lcp_ms", "fcp_ms",
             "inp_ms", "ttfb_ms", "cls")  # fmt: skip
    with open_stream(str(psi_path)) as stream:
        mapped = [r for c in read_chunks(stream, detect_layout(stream), 8 << 20) for r in c.records]
    with open(out, "wb") as handle:
        handle.write(b"[\n")
        for n in range(records):
            record = dict(zip(names, mapped[n % len(mapped)], strict=True))
            record["measured_at"] += timedelta(hours=n // len(mapped))
            handle.write((b",\n" if n else b"") + orjson.dumps(record))
        handle.write(b"\n]\n")


def measure(path: Path, file_format: str) -> tuple[int, float]:
    """(records accepted, seconds) of one ingest of ``path``."""
    from pipeline.ingest import ingest_file

    started = time.perf_counter()
    result = ingest_file(str(path), file_format=file_format, force=True)
    seconds = time.perf_counter() - started
    if result.status != "loaded":
        raise SystemExit(f"{path}: {result.summary()}")
    return result.accepted, seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.ingest.formats.bench")
    parser.add_argument("--responses", type=int, default=4, help="GA4 responses")
    parser.add_argument("--rows-per-response", type=int, default=250_000)
    parser.add_argument("--psi", type=int, default=200, help="PSI v5 responses")
    parser.add_argument("--psi-bytes", type=int, default=500_000, help="compact size of each")
    parser.add_argument("--psi-contract", type=int, default=500_000, help="contract PSI records")
    parser.add_argument("--dir", help="where the files go (default: a temporary directory)")
    args = parser.parse_args(argv)

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "metriflow.settings.local")
    import django

    django.setup()
    from django.conf import settings

    from . import samples

    settings.METRIFLOW_PIPELINE_TRIGGER = False
    with tempfile.TemporaryDirectory(dir=args.dir) as scratch:
        folder = Path(scratch)
        files = {
            "ga4 compact": (folder / "ga4.json", "ga4"),
            "ga4 indented": (folder / "ga4-indented.json", "ga4"),
            "ga contract": (folder / "ga.json", "auto"),
            "psi v5 indented": (folder / "psi-v5.json", "psi"),
            "psi v5 ndjson": (folder / "psi-v5.ndjson", "psi"),
            "psi contract": (folder / "psi.json", "auto"),
        }
        samples.write_ga4(str(files["ga4 compact"][0]), responses=args.responses,
                          rows=args.rows_per_response)  # fmt: skip
        _indent(files["ga4 compact"][0], files["ga4 indented"][0])
        _contract_ga(files["ga4 compact"][0], files["ga contract"][0])
        samples.write_psi(str(files["psi v5 indented"][0]), responses=args.psi,
                          response_bytes=args.psi_bytes)  # fmt: skip
        samples.write_psi(str(files["psi v5 ndjson"][0]), responses=args.psi,
                          response_bytes=args.psi_bytes, layout="ndjson")  # fmt: skip
        _contract_psi(files["psi v5 ndjson"][0], files["psi contract"][0], args.psi_contract)
        rates = {}
        print(f"{'file':<18}{'MB':>9}{'records':>11}{'s':>8}{'records/s':>12}{'MB/s':>8}")
        for name, (path, file_format) in files.items():
            records, seconds = measure(path, file_format)
            size = path.stat().st_size / 1e6
            rates[name] = records / seconds
            print(f"{name:<18}{size:>9.1f}{records:>11,}{seconds:>8.2f}"
                  f"{records / seconds:>12,.0f}{size / seconds:>8.1f}")  # fmt: skip
        for name in ("ga4 compact", "ga4 indented"):
            print(f"{name} / ga contract records/s: {rates[name] / rates['ga contract']:.2f}")
        for name in ("psi v5 indented", "psi v5 ndjson"):
            print(f"{name} / psi contract records/s: {rates[name] / rates['psi contract']:.4f}")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(f"peak RSS of this process (writing included): {peak:.0f} MB")
    return 0


def _indent(source: Path, target: Path) -> None:
    """The same responses indented by two spaces, as the API sends them (one at a time)."""
    from ..readers import detect_layout, open_stream
    from .scanner import Scanner, top_level

    with open_stream(str(source)) as stream, open(target, "wb") as out:
        scanner = Scanner(stream)
        out.write(b"[\n")
        for n, _ in enumerate(top_level(scanner, detect_layout(stream))):
            text, _depth = scanner.container(keep=1 << 30)
            indented = orjson.dumps(orjson.loads(text), option=orjson.OPT_INDENT_2)
            out.write((b",\n" if n else b"") + indented)
        out.write(b"\n]\n")


if __name__ == "__main__":
    raise SystemExit(main())
