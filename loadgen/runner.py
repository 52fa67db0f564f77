"""Runs the per-source generators (in parallel processes) and writes the manifest."""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import resource
import sys
import time
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait

from loadgen import __version__, timeutil
from loadgen.catalog import build_catalog
from loadgen.options import Options
from loadgen.worker import generate_source

MANIFEST = "manifest.json"

_counter = None  # shared record counter in worker processes


def _init_worker(counter) -> None:
    global _counter
    _counter = counter


def _bump(n: int) -> None:
    assert _counter is not None
    with _counter.get_lock():
        _counter.value += n


def _run_in_worker(opts: Options, name: str) -> dict:
    return generate_source(opts, name, _bump)


def _progress_bar(opts: Options, total: int):
    if not opts.progress or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(
        total=total, unit="rec", unit_scale=True, desc="loadgen", file=sys.stderr, smoothing=0.1
    )


def generate(opts: Options) -> tuple[dict, dict]:
    """Write every file and the manifest. Returns (manifest, run statistics)."""
    started = time.perf_counter()
    os.makedirs(opts.out, exist_ok=True)
    total = opts.records * len(opts.sources)
    workers = min(opts.jobs, len(opts.sources))
    results: list[dict] = []
    if workers <= 1:
        bar = _progress_bar(opts, total)
        try:
            for name in opts.sources:
                results.append(generate_source(opts, name, bar.update if bar else None))
        finally:
            if bar is not None:
                bar.close()
    else:
        ctx = mp.get_context("spawn")
        counter = ctx.Value("q", 0)
        with ProcessPoolExecutor(
            max_workers=workers, mp_context=ctx, initializer=_init_worker, initargs=(counter,)
        ) as pool:
            # The bar is created after the workers so no thread exists when they start.
            futures = [pool.submit(_run_in_worker, opts, name) for name in opts.sources]
            bar = _progress_bar(opts, total)
            shown = 0
            try:
                while True:
                    done, pending = wait(futures, timeout=0.25, return_when=FIRST_EXCEPTION)
                    if bar is not None:
                        value = counter.value
                        bar.update(value - shown)
                        shown = value
                    if not pending or any(f.exception() for f in done):
                        break
            finally:
                if bar is not None:
                    bar.close()
            results = [f.result() for f in futures]
    manifest = build_manifest(opts, results)
    path = os.path.join(opts.out, MANIFEST)
    with open(path + ".part", "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=2)
        f.write("\n")
    os.replace(path + ".part", path)
    stats = {
        "seconds": time.perf_counter() - started,
        "sources": {r["source"]: r["stats"] for r in results},
        "parent_max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
        "workers": workers,
    }
    return manifest, stats


def build_manifest(opts: Options, results: list[dict]) -> dict:
    catalog = build_catalog(opts.pages, opts.sites, opts.seed, opts.format == "seed")
    last = timeutil.hour_at(opts.start_dt, opts.hours - 1)
    return {
        "generator": "metriflow-loadgen",
        "version": __version__,
        "arguments": opts.arguments(),
        "records_per_source": opts.records,
        "pages": opts.pages,
        "sites": catalog.hosts,
        "hours": {
            "first": timeutil.iso_hour(opts.start_dt),
            "last": timeutil.iso_hour(last),
            "count": opts.hours,
            "last_hour_pages": opts.records - (opts.hours - 1) * opts.pages,
        },
        "files": [f for r in results for f in r["files"]],
    }
