"""Template filters: times, durations, ids and JSON for people.

Everything that turns data into HTML here escapes it with markupsafe; the
templates autoescape the rest.
"""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from markupsafe import Markup, escape

FOLD_STRING = 160  # characters of a string value shown before it is folded
FOLD_ITEMS = 20  # items of an array or object shown before the rest is folded

_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-([0-9a-f]{32})-([0-9a-f]{16})-[0-9a-f]{2}")


def age(value: timedelta | None) -> str:
    """A short human duration: 45s, 3m 12s, 2h 05m, 4d 03h."""
    if value is None:
        return "-"
    seconds = int(value.total_seconds())
    prefix = ""
    if seconds < 0:
        prefix, seconds = "-", -seconds
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{prefix}{days}d {hours:02d}h"
    if hours:
        return f"{prefix}{hours}h {minutes:02d}m"
    if minutes:
        return f"{prefix}{minutes}m {secs:02d}s"
    if seconds == 0 and value.total_seconds():
        return f"{prefix}{abs(value.total_seconds()) * 1000:.0f}ms"
    return f"{prefix}{secs}s"


def when(value: datetime | None, now: datetime | None = None) -> Markup:
    """UTC time with how long ago (or how far ahead) it is."""
    if value is None:
        return Markup('<span class="muted">-</span>')
    now = now or datetime.now(timezone.utc)
    text = value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    delta = now - value
    rel = f"{age(delta)} ago" if delta >= timedelta(0) else f"in {age(-delta)}"
    return Markup('<time datetime="{iso}" title="{rel}">{text}</time> <span class="muted">{rel}</span>').format(
        iso=value.isoformat(), rel=rel, text=text
    )


def short_id(value: UUID | str | None) -> str:
    return "-" if value is None else str(value)[:8]


def trace_id(trace_context: str | None) -> str | None:
    """The trace id of a W3C traceparent, else None."""
    if not trace_context:
        return None
    m = _TRACEPARENT.match(trace_context.strip())
    return m.group(1) if m else None


def json_html(value: Any) -> Markup:
    """Pretty JSON as HTML: long strings and long arrays/objects folded into
    <details> elements, every piece escaped."""
    if value is None:
        return Markup('<span class="muted">null</span>')
    return Markup('<pre class="json">{}</pre>').format(_render(value, 0))


def _render(value: Any, depth: int) -> Markup:
    pad = "  " * depth
    inner = "  " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return Markup("{}")
        parts = [
            Markup('{}<span class="k">{}</span>: {}').format(inner, json.dumps(str(k)), _render(v, depth + 1))
            for k, v in value.items()
        ]
        return _fold_items(parts, "{", "}", pad, "keys")
    if isinstance(value, list):
        if not value:
            return Markup("[]")
        parts = [Markup("{}{}").format(inner, _render(v, depth + 1)) for v in value]
        return _fold_items(parts, "[", "]", pad, "items")
    if isinstance(value, str):
        text = json.dumps(value, ensure_ascii=False)
        if len(value) > FOLD_STRING:
            return Markup(
                '<details class="fold"><summary><span class="s">{}</span>… '
                '<span class="muted">({} characters)</span></summary><span class="s">{}</span></details>'
            ).format(text[: FOLD_STRING // 2], len(value), text)
        return Markup('<span class="s">{}</span>').format(text)
    if isinstance(value, bool) or value is None:
        return Markup('<span class="b">{}</span>').format(json.dumps(value))
    return Markup('<span class="n">{}</span>').format(json.dumps(value))


def _fold_items(parts: list[Markup], open_: str, close: str, pad: str, noun: str) -> Markup:
    shown = Markup(",\n").join(parts[:FOLD_ITEMS])
    if len(parts) <= FOLD_ITEMS:
        return Markup("{}\n{}\n{}{}").format(open_, shown, pad, close)
    rest = Markup(",\n").join(parts[FOLD_ITEMS:])
    return Markup(
        '{}\n{},\n<details class="fold"><summary>{}… {} more {}</summary>{}</details>{}{}'
    ).format(open_, shown, pad + "  ", len(parts) - FOLD_ITEMS, noun, rest, pad, close)


def register(env: Any) -> None:
    env.filters.update(
        age=age, when=when, short_id=short_id, trace_id=trace_id, json_html=json_html
    )
    env.globals.update(escape=escape)
