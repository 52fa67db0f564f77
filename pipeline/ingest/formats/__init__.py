"""Google's response formats, read as contract records (docs/sources.md).

``ga4``: GA4 Data API ``runReport`` responses, as GA records (:mod:`.ga4`).
``psi``: PageSpeed Insights v5 responses, as PSI records (:mod:`.psi`).
Each yields :class:`~pipeline.ingest.readers.Chunk` s whose records are the
values of a validated record (page not yet resolved) or an
:class:`~pipeline.ingest.schemas.Unreadable` with the reason of its reject.
"""

SOURCE_OF = {"ga4": "ga", "psi": "psi"}
