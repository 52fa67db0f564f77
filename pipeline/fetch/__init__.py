"""Fetching from Google: GA4 Data API reports and PageSpeed Insights v5 runs.

``ga4`` and ``psi`` write what the APIs return to NDJSON files that
``manage.py ingest --format ga4|psi`` reads; ``http`` holds the bounds and the
retry policy they share; ``service`` ties a fetch to its ingest
(``manage.py fetch``).
"""
