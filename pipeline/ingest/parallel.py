"""Several files at once: one process per file (parsing is CPU-bound), bounded.

GA and PSI files are ingested side by side, at most ``parallel`` at a time
(``METRIFLOW_INGEST_PARALLEL``). Each worker process reports its counters
through shared memory so the parent can draw one progress bar.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict

from django.conf import settings

from .service import FileResult, IngestError, Progress, conninfo, ingest_file

_counters = None  # shared RawArray in worker processes: [records, rejected] per file


def _init_worker(counters) -> None:
    import django

    django.setup()
    global _counters
    _counters = counters


def _ingest_in_worker(index: int, path: str, options: dict) -> dict:
    def report(records: int, rejected: int) -> None:
        _counters[2 * index] += records
        _counters[2 * index + 1] += rejected

    try:
        result = ingest_file(path, progress=Progress(callback=report), **options)
    except IngestError as exc:
        result = FileResult(path=path, status="failed", message=str(exc))
    return asdict(result)


def ingest_files(
    paths: list[str],
    *,
    parallel: int | None = None,
    show_progress: bool | None = None,
    **options,
) -> list[FileResult]:
    """Ingests every file (in parallel up to ``parallel``); results in the order given."""
    parallel = max(1, min(parallel or settings.METRIFLOW_INGEST_PARALLEL, len(paths)))
    if show_progress is None:
        show_progress = sys.stderr.isatty()
    # Worker processes set Django up afresh: they are told the database explicitly,
    # which may differ from what the settings module alone says (e.g. under tests).
    options = {**options, "dsn": options.get("dsn") or conninfo()}
    counters = mp.get_context("spawn").RawArray("q", 2 * len(paths))
    bar = _ProgressBar(counters, enabled=show_progress)
    bar.start()
    try:
        if parallel == 1:
            results = []
            for index, path in enumerate(paths):

                def report(records: int, rejected: int, index=index) -> None:
                    counters[2 * index] += records
                    counters[2 * index + 1] += rejected

                try:
                    results.append(ingest_file(path, progress=Progress(callback=report), **options))
                except IngestError as exc:
                    results.append(FileResult(path=path, status="failed", message=str(exc)))
            return results
        with ProcessPoolExecutor(
            max_workers=parallel,
            mp_context=mp.get_context("spawn"),
            initializer=_init_worker,
            initargs=(counters,),
        ) as pool:
            futures = [
                pool.submit(_ingest_in_worker, index, path, options)
                for index, path in enumerate(paths)
            ]
            return [FileResult(**future.result()) for future in futures]
    finally:
        bar.stop()


class _ProgressBar:
    """One tqdm bar over all files, fed from the shared counters (terminal only)."""

    def __init__(self, counters, enabled: bool) -> None:
        self._counters = counters
        self._enabled = enabled
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        if self._enabled:
            self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        from tqdm import tqdm

        with tqdm(unit=" records", unit_scale=True, desc="ingest", dynamic_ncols=True) as bar:
            shown = 0
            while True:
                finished = self._done.wait(0.25)
                records = sum(self._counters[0::2])
                rejected = sum(self._counters[1::2])
                bar.update(records - shown)
                shown = records
                bar.set_postfix(rejects=f"{rejected:,}", refresh=False)
                if finished:
                    break
            time.sleep(0)
