"""Throughput benchmark of the load generator.

``python -m loadgen.bench`` writes 13,000,000 GA and 13,000,000 PSI records (GA and
PSI in parallel processes) to a temporary directory, prints records/s, MB/s and
peak memory, and removes the directory unless ``--keep`` is given.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile

from loadgen.options import Options
from loadgen.runner import generate


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m loadgen.bench", description=__doc__.split("\n")[0])
    p.add_argument("--records", type=int, default=13_000_000, help="records per source")
    p.add_argument("--pages", type=int, default=200)
    p.add_argument("--sources", default="ga,psi")
    p.add_argument("--layout", choices=("array", "ndjson"), default="array")
    p.add_argument("--format", choices=("contract", "seed"), default="contract")
    p.add_argument("--gzip", action="store_true")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", help="directory to write into (default: a new temporary directory)")
    p.add_argument("--keep", action="store_true", help="keep the files written")
    p.add_argument("--progress", action="store_true", help="show the progress bar")
    return p


def _mb(n: float) -> float:
    return n / 1e6


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or tempfile.mkdtemp(prefix="metriflow-loadgen-bench-")
    opts = Options(
        out=out,
        records=args.records,
        pages=args.pages,
        sources=tuple(s.strip() for s in args.sources.split(",") if s.strip()),
        layout=args.layout,
        format=args.format,
        gzip=args.gzip,
        jobs=args.jobs,
        seed=args.seed,
        progress=args.progress,
    )
    try:
        _manifest, stats = generate(opts)
    finally:
        if not args.keep:
            shutil.rmtree(out, ignore_errors=True)
    total = stats["seconds"]
    rows = []
    for name, s in stats["sources"].items():
        rows.append((name, s["records"], s["seconds"], s["bytes"], s["uncompressed_bytes"]))
    records = sum(r[1] for r in rows)
    size = sum(r[3] for r in rows)
    raw = sum(r[4] for r in rows)
    rows.append(("total", records, total, size, raw))
    print(
        f"loadgen bench: {opts.records:,} records per source, sources={','.join(opts.sources)}, "
        f"layout={opts.layout}, format={opts.format}, gzip={opts.gzip}, "
        f"workers={stats['workers']}"
    )
    head = f"{'source':<7}{'records':>14}{'seconds':>10}{'records/s':>13}{'MB':>10}{'MB/s':>9}"
    print(head)
    print("-" * len(head))
    for name, n, sec, b, _raw in rows:
        print(f"{name:<7}{n:>14,}{sec:>10.2f}{n / sec:>13,.0f}{_mb(b):>10,.1f}{_mb(b) / sec:>9.1f}")
    if opts.gzip:
        print(f"uncompressed: {_mb(raw):,.1f} MB ({_mb(raw) / total:.1f} MB/s)")
    worker_rss = max(s["max_rss_kb"] for s in stats["sources"].values())
    print(
        f"peak RSS: parent {stats['parent_max_rss_kb'] / 1024:.1f} MB, "
        f"max worker {worker_rss / 1024:.1f} MB"
    )
    if args.keep:
        print(f"files kept in {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
