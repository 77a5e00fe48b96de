"""``notifier_from_url``: a notifier from one string (``queuert worker
--notify``, configuration files, environment variables).

=====================================  ============================================
``postgres`` (or a ``postgresql://``   :class:`~queuert.notify.PostgresNotifier`
/ ``postgres://`` URL)                 (LISTEN/NOTIFY; the bare word uses ``conninfo``)
``redis://``, ``rediss://``,           :class:`~queuert.notify.redis.RedisNotifier`
``unix://``
``redis+cluster://``,                  the same on a Redis Cluster (any node's
``rediss+cluster://``                  address; the ``+cluster`` is dropped)
``nats://``, ``tls://`` (several       :class:`~queuert.notify.nats.NatsNotifier`
servers: comma-separated URLs)
``none``                               :class:`~queuert.notify.NullNotifier` (poll only)
=====================================  ============================================

The Redis and NATS channel prefix defaults to the schema name, so one broker
can serve several schemas; a ``prefix`` query parameter sets another
(``redis://cache:6379/0?prefix=billing``; it is taken out of the URL before
the client sees it). Producers must use the same prefix
(``RedisNotifier(url, prefix=...)``; the default, ``queuert``, is the
default schema's name).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from queuert.notify.base import Notifier
from queuert.notify.null import NullNotifier
from queuert.notify.postgres import PostgresNotifier

__all__ = ["notifier_from_url"]

_REDIS = ("redis://", "rediss://", "unix://")
_REDIS_CLUSTER = ("redis+cluster://", "rediss+cluster://")
_NATS = ("nats://", "tls://")
_POSTGRES = ("postgresql://", "postgres://")


def notifier_from_url(
    url: str,
    *,
    conninfo: str | None = None,
    schema: str = "queuert",
    prefix: str | None = None,
) -> Notifier:
    """The notifier ``url`` names (see the module docs). ``conninfo``: the
    database for ``postgres``; ``schema``: the queuert schema (the
    PostgreSQL channels' prefix, and the broker prefix unless ``prefix``
    is given). Raises ValueError for anything else, or when the broker's
    client library is not installed (``pip install 'queuert[redis]'`` /
    ``'queuert[nats]'``)."""
    text = url.strip()
    lower = text.lower()
    broker_prefix = prefix if prefix is not None else schema
    if lower.startswith(_REDIS + _REDIS_CLUSTER + _NATS):
        text, url_prefix = _take_prefix(text)
        if url_prefix is not None and prefix is None:
            broker_prefix = url_prefix
    if lower == "none":
        return NullNotifier()
    if lower in ("postgres", "postgresql"):
        if not conninfo:
            raise ValueError("notify 'postgres' needs the database conninfo")
        return PostgresNotifier(conninfo, schema=schema)
    if lower.startswith(_POSTGRES):
        return PostgresNotifier(text, schema=schema)
    if lower.startswith(_REDIS + _REDIS_CLUSTER):
        try:
            from queuert.notify.redis import RedisNotifier
        except ImportError as exc:
            raise ValueError(f"notify {url!r} needs redis-py: pip install 'queuert[redis]' ({exc})") from exc
        if lower.startswith(_REDIS_CLUSTER):
            return RedisNotifier(text.replace("+cluster", "", 1), prefix=broker_prefix, cluster=True)
        return RedisNotifier(text, prefix=broker_prefix)
    if lower.startswith(_NATS):
        try:
            from queuert.notify.nats import NatsNotifier
        except ImportError as exc:
            raise ValueError(f"notify {url!r} needs nats-py: pip install 'queuert[nats]' ({exc})") from exc
        servers = [s.strip() for s in text.split(",") if s.strip()]
        return NatsNotifier(servers if len(servers) > 1 else servers[0], prefix=broker_prefix)
    raise ValueError(
        f"unknown notify setting {url!r}: expected postgres, none, redis://..., "
        "redis+cluster://..., nats://..."
    )


def _take_prefix(url: str) -> tuple[str, str | None]:
    """``url`` without its ``prefix`` query parameter(s), and the last one."""
    if "?" not in url:
        return url, None
    parts = []
    for one in url.split(","):  # NATS: several servers
        split = urlsplit(one.strip())
        query = parse_qsl(split.query, keep_blank_values=True)
        found = [v for k, v in query if k == "prefix"]
        parts.append((urlunsplit(split._replace(query=urlencode([(k, v) for k, v in query if k != "prefix"]))), found))
    values = [v for _, found in parts for v in found]
    return ",".join(u for u, _ in parts), (values[-1] if values else None)
