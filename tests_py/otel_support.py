"""An OpenTelemetry SDK for one test: in-memory span exporter and metric
reader installed as the global providers, and the API's defaults (no SDK)
restored afterwards, so the rest of the suite runs without telemetry.

The API lets a process set its providers once; the SDK's own test helpers
reset the same module globals this does.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.metrics import _internal as metrics_internal
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.util._once import Once


@dataclass
class Sdk:
    spans: InMemorySpanExporter
    reader: InMemoryMetricReader
    tracer_provider: TracerProvider

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def named(self, name: str) -> list[ReadableSpan]:
        return [s for s in self.finished() if s.name == name]

    def metric_points(self) -> dict[str, list[Any]]:
        """Metric name -> its data points (as last collected)."""
        data = self.reader.get_metrics_data()
        out: dict[str, list[Any]] = {}
        if data is None:
            return out
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    out.setdefault(m.name, []).extend(m.data.data_points)
        return out

    def counter(self, name: str, **attrs: Any) -> int:
        """Sum of a counter's points whose attributes include ``attrs``."""
        return sum(
            p.value
            for p in self.metric_points().get(name, [])
            if all(p.attributes.get(k) == v for k, v in attrs.items())
        )

    def histogram_count(self, name: str, **attrs: Any) -> int:
        return sum(
            p.count
            for p in self.metric_points().get(name, [])
            if all(p.attributes.get(k) == v for k, v in attrs.items())
        )


def reset_globals() -> None:
    """Back to the API's defaults: no SDK configured."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()
    trace._TRACER_PROVIDER = None
    metrics_internal._METER_PROVIDER_SET_ONCE = Once()
    metrics_internal._METER_PROVIDER = None


@contextmanager
def installed_sdk() -> Iterator[Sdk]:
    exporter = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(metric_readers=[reader])
    reset_globals()
    trace.set_tracer_provider(tracer_provider)
    metrics.set_meter_provider(meter_provider)
    try:
        yield Sdk(exporter, reader, tracer_provider)
    finally:
        reset_globals()
        tracer_provider.shutdown()
        meter_provider.shutdown()


def traceparent_of(span: Any) -> str:
    """The W3C traceparent a finished span would propagate."""
    c = span.context
    return f"00-{c.trace_id:032x}-{c.span_id:016x}-{int(c.trace_flags):02x}"
