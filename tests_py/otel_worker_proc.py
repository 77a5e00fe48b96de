"""A worker process with OpenTelemetry's SDK, for test_telemetry_worker.py.

    python otel_worker_proc.py DSN MODE OUT_FILE TYPE [TYPE ...]

Configures the SDK (spans kept in memory, metrics read by an in-memory
reader), runs a Worker for the given job types of the cross-process chain
(handlers below), prints "ready <worker id>" once it claims, and on SIGTERM
(the Worker's graceful stop) writes every finished span and the metric
points as JSON to OUT_FILE before exiting.
"""

from __future__ import annotations

import json
import sys
import threading
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

import queuert


def span_json(s: ReadableSpan) -> dict[str, Any]:
    return {
        "name": s.name,
        "kind": s.kind.name,
        "trace_id": f"{s.context.trace_id:032x}",
        "span_id": f"{s.context.span_id:016x}",
        "parent_span_id": f"{s.parent.span_id:016x}" if s.parent is not None else None,
        "attributes": {k: (list(v) if isinstance(v, tuple) else v) for k, v in (s.attributes or {}).items()},
        "links": [
            {
                "trace_id": f"{link.context.trace_id:032x}",
                "span_id": f"{link.context.span_id:016x}",
                "attributes": dict(link.attributes or {}),
            }
            for link in s.links
        ],
        "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
        "status": s.status.status_code.name,
    }


def metric_json(reader: InMemoryMetricReader) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    data = reader.get_metrics_data()
    for rm in data.resource_metrics if data is not None else ():
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                for p in m.data.data_points:
                    value = getattr(p, "value", None)
                    out.append(
                        {
                            "name": m.name,
                            "attributes": dict(p.attributes or {}),
                            "value": value if value is not None else p.count,
                        }
                    )
    return out


def build(dsn: str, mode: str, types: list[str]) -> queuert.Worker:
    worker = queuert.Worker(dsn, mode=mode, concurrency=2, types=types, poll_interval=0.2)  # type: ignore[arg-type]

    async def order(job: Any) -> Any:
        blockers = job.input["blockers"]
        return job.continue_with("pack", {"order": job.input["order"]}, blockers=blockers)

    async def pack(job: Any) -> Any:
        fetched = [b.output["fetched"] for b in job.blockers]
        return job.continue_with("ship", {"parts": fetched})

    async def ship(job: Any) -> Any:
        return {"shipped": job.input["parts"]}

    async def fetch(job: Any) -> Any:
        return {"fetched": job.type_name}

    handlers = {"order": order, "pack": pack, "ship": ship, "fetch_a": fetch, "fetch_b": fetch}
    for name in types:
        worker.handler(name, handlers[name])
    return worker


def main() -> None:
    dsn, mode, out_file, types = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    trace.set_tracer_provider(tracer_provider)
    reader = InMemoryMetricReader()
    metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))

    worker = build(dsn, mode, types)

    def announce() -> None:
        import asyncio

        worker_id = asyncio.run(worker.wait_started(30))
        print(f"ready {worker_id}", flush=True)

    threading.Thread(target=announce, daemon=True).start()
    worker.run(handle_signals=True)
    with open(out_file, "w") as f:
        json.dump(
            {
                "spans": [span_json(s) for s in spans.get_finished_spans()],
                "metrics": metric_json(reader),
            },
            f,
        )


if __name__ == "__main__":
    main()
