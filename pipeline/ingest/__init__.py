"""Ingestion: GA and PSI files streamed into the raw tables with COPY."""

from .parallel import ingest_files
from .service import FileResult, IngestError, ingest_file

__all__ = ["FileResult", "IngestError", "ingest_file", "ingest_files"]
