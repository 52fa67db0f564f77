"""Metriflow load generator.

Writes synthetic Google Analytics (GA) traffic files and PageSpeed Insights (PSI)
performance files in the input formats of the Metriflow contract (section 1),
optionally with controlled faults (duplicates, corrections, late records,
malformed records, truncation) for testing the ingestion pipeline.

Run it as ``python -m loadgen --help``; ``python -m loadgen.bench`` measures its
throughput.
"""

__version__ = "1.0.0"
