"""Where queuert's Django settings come from: ``settings.QUEUERT`` and the
connection settings of a ``DATABASES`` entry, turned into a libpq conninfo."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg import pq
from psycopg.conninfo import make_conninfo

from queuert.migrate import MigrationError, validate_schema_name

__all__ = ["KNOWN_KEYS", "conninfo", "conninfo_from_settings", "queuert_settings", "schema", "worker_target"]

KNOWN_KEYS = frozenset({"DATABASE", "DSN", "SCHEMA", "WORKER"})
_FIELDS = {"NAME": "dbname", "USER": "user", "PASSWORD": "password", "HOST": "host", "PORT": "port"}


def _improperly_configured(message: str) -> Exception:
    from django.core.exceptions import ImproperlyConfigured

    return ImproperlyConfigured(message)


def queuert_settings() -> Mapping[str, Any]:
    """``settings.QUEUERT``, checked: an unknown key is an error, not a no-op."""
    from django.conf import settings

    values = getattr(settings, "QUEUERT", {}) or {}
    if not isinstance(values, Mapping):
        raise _improperly_configured("settings.QUEUERT must be a dict")
    unknown = sorted(set(values) - KNOWN_KEYS)
    if unknown:
        raise _improperly_configured(
            f"settings.QUEUERT has unknown key(s) {unknown}; known: {sorted(KNOWN_KEYS)}"
        )
    return values


def conninfo_from_settings(database: Mapping[str, Any]) -> str:
    """The libpq conninfo of one ``DATABASES`` entry: NAME, USER, PASSWORD,
    HOST, PORT and those OPTIONS that are libpq parameters (``sslmode``,
    ``service``, ``options`` ...; Django's own, such as ``isolation_level``
    or ``pool``, are left out)."""
    engine = str(database.get("ENGINE", ""))
    if "postgresql" not in engine and "postgis" not in engine:
        raise _improperly_configured(
            f"queuert needs a PostgreSQL database; this one's ENGINE is {engine!r}"
        )
    params: dict[str, Any] = {}
    for key, name in _FIELDS.items():
        value = database.get(key)
        if value not in (None, ""):
            params[name] = value
    libpq = {opt.keyword.decode() for opt in pq.Conninfo.get_defaults()}
    for key, value in (database.get("OPTIONS") or {}).items():
        if key in libpq and value not in (None, ""):
            params[key] = value
    return make_conninfo(**params)


def conninfo(alias: str | None = None) -> str:
    """``QUEUERT["DSN"]`` when set, else the conninfo of ``DATABASES[alias]``
    (default ``QUEUERT["DATABASE"]``, else ``"default"``)."""
    values = queuert_settings()
    if values.get("DSN") and alias is None:
        return str(values["DSN"])
    from django.db import connections

    alias = alias or str(values.get("DATABASE") or "default")
    if alias not in connections.databases:
        raise _improperly_configured(f"DATABASES has no {alias!r} entry")
    return conninfo_from_settings(connections.databases[alias])


def schema() -> str:
    """``QUEUERT["SCHEMA"]`` (default ``queuert``), validated."""
    value = str(queuert_settings().get("SCHEMA") or "queuert")
    try:
        return validate_schema_name(value)
    except MigrationError as exc:
        raise _improperly_configured(f"settings.QUEUERT['SCHEMA']: {exc}") from exc


def worker_target() -> str | None:
    """``QUEUERT["WORKER"]``: the default ``MODULE:ATTR`` of ``queuert_worker``."""
    value = queuert_settings().get("WORKER")
    return str(value) if value else None
