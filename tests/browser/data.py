"""Data the browser tests read: a small generated data set through every stage."""

from __future__ import annotations

from pipeline import stages
from pipeline.ingest import ingest_files

from ..contract import generate
from .conftest import START


def load_dataset(tmp_path) -> None:
    generate(tmp_path, "--records", "1200", "--pages", "12", "--sites", "2",
             "--start", START.isoformat())  # fmt: skip
    ingest_files([str(tmp_path / n) for n in ("ga.json", "psi.json")], parallel=1,
                 show_progress=False)  # fmt: skip
    stages.drain()
