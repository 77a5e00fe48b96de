"""queuert's embeddable dashboard: an ASGI app (Starlette, Jinja2) that shows
chains and jobs and acts on them through the engine's SQL API.

    from queuert.dashboard import create_dashboard
    app.mount("/queuert", create_dashboard("postgresql://app@db/app"))

Needs the ``dashboard`` extra (``pip install 'queuert[dashboard]'``); see
docs/dashboard.md.
"""

from __future__ import annotations

from .app import Dashboard, create_dashboard
from .security import Authorize

__all__ = ["Authorize", "Dashboard", "create_dashboard"]
