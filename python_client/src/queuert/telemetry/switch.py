"""On/off, and the lazily imported OpenTelemetry API.

Instrumentation is active when it is enabled (the default; off with
:func:`set_enabled` or ``QUEUERT_TELEMETRY=off``), ``opentelemetry-api`` is
installed and the application configured a provider: the API's defaults (a
proxy that was never given a provider, or a no-op one) mean "no SDK", and
then nothing is built at all, not even no-op spans. Traces and metrics can
be switched apart (``QUEUERT_TELEMETRY=metrics`` keeps only the metrics,
``=traces`` only the traces): a span per attempt is the larger part of the
cost at thousands of jobs per second (benchmarks/README.md, telemetry).
"""

from __future__ import annotations

import os
import sys
from types import ModuleType
from typing import Any

__all__ = ["inactive", "is_enabled", "meter", "set_enabled", "tracer"]

_OFF_WORDS = frozenset({"0", "off", "false", "no", "disabled"})

_setting = os.environ.get("QUEUERT_TELEMETRY", "").strip().lower()
_traces_on = _setting not in _OFF_WORDS and _setting != "metrics"
_metrics_on = _setting not in _OFF_WORDS and _setting != "traces"

# the API modules, imported on first use (None after a look: not installed)
_trace: ModuleType | None = None
_metrics: ModuleType | None = None
_trace_looked = False
_metrics_looked = False
_default_tracer_providers: tuple[type, ...] = ()
_default_meter_providers: tuple[type, ...] = ()
# (provider, tracer or meter) of the last lookup: one per provider
_tracer_cache: tuple[Any, Any] = (None, None)
_meter_cache: tuple[Any, Any] = (None, None)
# The API's global providers are read where the API keeps them (the module
# globals its get_*_provider functions return once set): with no SDK those
# functions test os.environ for a provider named there on every call, about
# half a microsecond a job in a worker. The environment is read once here;
# set, or an API without those globals, goes through the functions.
_meter_module: ModuleType | None = None
_fast_tracer = False
_fast_meter = False

_SCOPE = "queuert"


def _api_in_use(module: str, provider_variable: str) -> bool:
    """Whether an SDK can be configured in this process yet: a provider is
    set through the API's module (so someone imported it: the SDK, an
    auto-instrumentation, the application), or named in the environment
    (the API loads it on first use; read on the first look). Until then
    the API is not imported: a worker that starts without an SDK would pay
    ~9 ms of CPU for the import at its start (benchmarks/README.md, "SQLite:
    the fifth pass"). Looked at again on each call (a dict lookup) until the
    module appears."""
    if module in sys.modules:
        return True
    named = _provider_named.get(provider_variable)
    if named is None:
        named = _provider_named[provider_variable] = provider_variable in os.environ
        global _none_named
        _none_named = not any(_provider_named.get(v, True) for v in _PROVIDER_VARIABLES)
    return named


_provider_named: dict[str, bool] = {}
_PROVIDER_VARIABLES = ("OTEL_PYTHON_TRACER_PROVIDER", "OTEL_PYTHON_METER_PROVIDER")
# True once both variables were looked at and neither names a provider: then,
# while no module of the API is imported ("opentelemetry" is not in
# sys.modules), inactive() answers at once (start_chain asks on every call)
_none_named = False
_modules = sys.modules


def set_enabled(enabled: bool = True, *, traces: bool | None = None, metrics: bool | None = None) -> None:
    """Turn queuert's instrumentation on or off for this process: both
    traces and metrics, or (``traces=`` / ``metrics=``) each on its own."""
    global _traces_on, _metrics_on
    _traces_on = bool(enabled if traces is None else traces)
    _metrics_on = bool(enabled if metrics is None else metrics)


def is_enabled() -> bool:
    """Whether any instrumentation is switched on (an SDK must still be configured)."""
    return _traces_on or _metrics_on


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("queuert")
    except PackageNotFoundError:
        return "0"


def _load_trace() -> ModuleType | None:
    global _trace, _trace_looked, _default_tracer_providers
    if not _trace_looked:
        if not _api_in_use("opentelemetry.trace", "OTEL_PYTHON_TRACER_PROVIDER"):
            return None
        _trace_looked = True
        try:
            from opentelemetry import trace
        except ImportError:
            return None
        _trace = trace
        _default_tracer_providers = (trace.ProxyTracerProvider, trace.NoOpTracerProvider)
        global _fast_tracer
        _fast_tracer = hasattr(trace, "_TRACER_PROVIDER") and "OTEL_PYTHON_TRACER_PROVIDER" not in os.environ
    return _trace


def _load_metrics() -> ModuleType | None:
    global _metrics, _metrics_looked, _default_meter_providers
    if not _metrics_looked:
        if not _api_in_use("opentelemetry.metrics", "OTEL_PYTHON_METER_PROVIDER"):
            return None
        _metrics_looked = True
        try:
            from opentelemetry import metrics
            from opentelemetry.metrics import _internal
        except ImportError:
            return None
        _metrics = metrics
        _default_meter_providers = (_internal._ProxyMeterProvider, metrics.NoOpMeterProvider)
        global _meter_module, _fast_meter
        _meter_module = _internal
        _fast_meter = hasattr(_internal, "_METER_PROVIDER") and "OTEL_PYTHON_METER_PROVIDER" not in os.environ
    return _metrics


def inactive() -> bool:
    """True when neither :func:`tracer` nor :func:`meter` can return one now:
    the client's hot paths (``start_chain``, ``start_chains``) and the
    worker's every attempt ask this once per call, in one function call and
    a few global reads; False when unsure (the API imported but not looked
    at yet, a provider set, or one named in the environment), and then they
    ask :func:`tracer` and :func:`meter`."""
    if _none_named and "opentelemetry" not in _modules:
        return True  # no API, no provider named: nothing can be configured
    if _traces_on:
        if _fast_tracer:
            if _trace._TRACER_PROVIDER is not None:  # type: ignore[union-attr]
                return False
        elif _trace is not None:
            return False
        elif not _trace_looked and _api_in_use("opentelemetry.trace", "OTEL_PYTHON_TRACER_PROVIDER"):
            return False
    if _metrics_on:
        if _fast_meter:
            if _meter_module._METER_PROVIDER is not None:  # type: ignore[union-attr]
                return False
        elif _metrics is not None:
            return False
        elif not _metrics_looked and _api_in_use("opentelemetry.metrics", "OTEL_PYTHON_METER_PROVIDER"):
            return False
    return True


def tracer() -> Any:
    """queuert's Tracer, or None when tracing is off or no SDK is configured."""
    global _tracer_cache
    if not _traces_on:
        return None
    trace = _trace if _trace is not None else _load_trace()
    if trace is None:
        return None
    if _fast_tracer:
        provider = trace._TRACER_PROVIDER
        if provider is None:  # none set: no SDK
            return None
    else:
        provider = trace.get_tracer_provider()
    if type(provider) in _default_tracer_providers:
        return None
    cached_provider, cached = _tracer_cache
    if cached_provider is not provider:
        cached = provider.get_tracer(_SCOPE, _version())
        _tracer_cache = (provider, cached)
    return cached


def meter() -> Any:
    """queuert's Meter, or None when metrics are off or no SDK is configured."""
    global _meter_cache
    if not _metrics_on:
        return None
    metrics = _metrics if _metrics is not None else _load_metrics()
    if metrics is None:
        return None
    if _fast_meter:
        provider = _meter_module._METER_PROVIDER  # type: ignore[union-attr]
        if provider is None:  # none set: no SDK
            return None
    else:
        provider = metrics.get_meter_provider()
    if type(provider) in _default_meter_providers:
        return None
    cached_provider, cached = _meter_cache
    if cached_provider is not provider:
        cached = provider.get_meter(_SCOPE, _version())
        _meter_cache = (provider, cached)
    return cached
