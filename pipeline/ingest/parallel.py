"""Several files at once: one process per file (parsing is CPU-bound), bounded.

GA and PSI files are ingested side by side, at most ``parallel`` at a time
(``METRIFLOW_INGEST_PARALLEL``). Each file reports its records, rejects and
bytes read through shared counters, which a monitor thread in the parent
samples for the progress bar: one bar over the bytes of all the files (the
files run side by side, so what a user waits for is all of them), with the
rate and the time left.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import sys
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from typing import TextIO

from django.conf import settings

from .service import FileResult, IngestError, Progress, conninfo, ingest_file

_SLOTS = 3  # counters per file: records, rejected, bytes read
_counters = None  # the shared RawArray, in worker processes


@dataclass(frozen=True)
class FileProgress:
    """Where the ingestion of one file stands."""

    path: str
    records: int
    rejected: int
    bytes_read: int
    bytes_total: int  # the file's size on disk (compressed size for gzip)


def file_size(path: str) -> int:
    """The size the progress of ``path`` is measured against (0 if it cannot be read)."""
    try:
        return os.path.getsize(path) if os.path.isfile(path) else 0
    except OSError:
        return 0


def _init_worker(counters) -> None:
    import django

    django.setup()
    global _counters
    _counters = counters


def _ingest_one(counters, index: int, path: str, options: dict) -> FileResult:
    """Ingests one file, counting into ``counters``; at the end its bytes are all read."""
    base = _SLOTS * index

    def report(records: int, rejected: int, bytes_read: int) -> None:
        counters[base] += records
        counters[base + 1] += rejected
        counters[base + 2] = bytes_read

    try:
        result = ingest_file(path, progress=Progress(callback=report), **options)
    except IngestError as exc:
        result = FileResult(path=path, status="failed", message=exc.reason)
    # Skipped, busy and unreadable files are done with too.
    counters[base + 2] = file_size(path)
    return result


def _ingest_in_worker(index: int, path: str, options: dict) -> dict:
    return asdict(_ingest_one(_counters, index, path, options))


def ingest_files(
    paths: Sequence[str],
    *,
    parallel: int | None = None,
    show_progress: bool | None = None,
    on_progress: Callable[[list[FileProgress]], None] | None = None,
    **options,
) -> list[FileResult]:
    """Ingests every file (in parallel up to ``parallel``); results in the order given.
    Without ``parallel``, files under ``METRIFLOW_INGEST_PARALLEL_MIN_BYTES`` in all are
    read one after the other in this process.

    ``show_progress`` draws a bar on stderr (default: when both stdout and
    stderr are terminals). ``on_progress`` is called with every file's
    progress a few times a second and once at the end.
    """
    paths = list(paths)
    if parallel is None and (
        sum(file_size(p) for p in paths) < settings.METRIFLOW_INGEST_PARALLEL_MIN_BYTES
    ):
        parallel = 1  # small files: a worker process would take longer to start
    parallel = max(1, min(parallel or settings.METRIFLOW_INGEST_PARALLEL, len(paths)))
    if show_progress is None:
        show_progress = sys.stdout.isatty() and sys.stderr.isatty()
    # Worker processes set Django up afresh: they are told the database explicitly,
    # which may differ from what the settings module alone says (e.g. under tests).
    options = {**options, "dsn": options.get("dsn") or conninfo()}
    counters = mp.get_context("spawn").RawArray("q", _SLOTS * len(paths))
    listeners = [on_progress] if on_progress else []
    bar = ProgressBar(sum(file_size(p) for p in paths), len(paths)) if show_progress else None
    if bar:
        listeners.append(bar.show)
    monitor = _Monitor(counters, paths, listeners)
    monitor.start()
    try:
        if parallel == 1:
            return [_ingest_one(counters, index, path, options) for index, path in enumerate(paths)]
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
        monitor.stop()
        if bar:
            bar.close()


class _Monitor:
    """Samples the shared counters every ``interval`` seconds for the listeners."""

    def __init__(self, counters, paths: list[str], listeners: list, interval: float = 0.25):
        self._counters = counters
        self._paths = paths
        self._sizes = [file_size(p) for p in paths]
        self._listeners = listeners
        self._interval = interval
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ingest-progress", daemon=True)

    def snapshot(self) -> list[FileProgress]:
        c = self._counters
        return [
            FileProgress(path, c[_SLOTS * i], c[_SLOTS * i + 1], c[_SLOTS * i + 2], size)
            for i, (path, size) in enumerate(zip(self._paths, self._sizes, strict=True))
        ]

    def start(self) -> None:
        if self._listeners:
            self._thread.start()

    def stop(self) -> None:
        self._done.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while True:
            finished = self._done.wait(self._interval)
            files = self.snapshot()
            for listener in self._listeners:
                listener(files)
            if finished:
                return


class ProgressBar:
    """One tqdm bar: bytes read of the total size of all files, with rate and time left."""

    def __init__(self, total_bytes: int, files: int, file: TextIO | None = None) -> None:
        from tqdm import tqdm

        self.bar = tqdm(
            total=total_bytes,
            unit="B",
            unit_scale=True,
            unit_divisor=1024,
            desc=f"ingest {files} file{'s' if files != 1 else ''}",
            dynamic_ncols=True,
            file=file,
        )

    def show(self, files: list[FileProgress]) -> None:
        done = sum(f.bytes_read for f in files)
        self.bar.update(done - self.bar.n)
        records = sum(f.records for f in files)
        rejected = sum(f.rejected for f in files)
        self.bar.set_postfix_str(f"{records:,} accepted, {rejected:,} rejected", refresh=True)

    def close(self) -> None:
        self.bar.close()
