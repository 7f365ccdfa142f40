"""The series every process that exports metrics reports about itself: build info
(`skiplock_build_info{version, schema_version}`) and prometheus-client's standard
process, platform and garbage-collector collectors (`process_*`, `python_*`)."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CollectorRegistry, GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from skiplock.version import __version__


class BuildInfo(Collector):
    """skiplock_build_info: 1, labelled with this process's version and the schema
    version its code ships (the newest migration it knows; a process refuses to start
    on any other)."""

    def __init__(self, schema_version: int) -> None:
        self.schema_version = schema_version

    def collect(self) -> Iterator[Metric]:
        info = GaugeMetricFamily(
            "skiplock_build_info",
            "This process's skiplock version and the schema version its code ships.",
            labels=["version", "schema_version"],
        )
        info.add_metric([__version__, str(self.schema_version)], 1)
        yield info


def register_process_metrics(registry: CollectorRegistry, *, schema_version: int) -> None:
    """Add build info and the standard process collectors to `registry`."""
    registry.register(BuildInfo(schema_version))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
