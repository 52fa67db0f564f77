"""What one scrape of ``/metrics`` answers: the processes' own metrics (summed over
every gunicorn worker in multiprocess mode) and the state read at scrape time."""

from __future__ import annotations

import os

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest, multiprocess

from .collectors import BrokerCollector, PipelineCollector


class _ThisProcess:
    """The default registry's metrics (this process's own), when there is one process."""

    def collect(self):
        return REGISTRY.collect()


def multiprocess_dir() -> str | None:
    return os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    if multiprocess_dir():
        multiprocess.MultiProcessCollector(registry)
    else:
        registry.register(_ThisProcess())
    registry.register(PipelineCollector())
    registry.register(BrokerCollector())
    return registry


def scrape() -> bytes:
    return generate_latest(scrape_registry())
