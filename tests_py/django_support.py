"""Django for the tests, without a settings module: settings are configured
once per process (Django allows no second time), and ``use_database(dsn)``
points Django's ``default`` database at a test's database (closing the
connection to the previous one), so ``django.db.connection`` is the real
PostgreSQL connection of that test."""

from __future__ import annotations

import django
from django.conf import settings
from django.db import connections
from psycopg.conninfo import conninfo_to_dict


def _database(dsn: str) -> dict[str, str]:
    p = conninfo_to_dict(dsn)
    return {
        "ENGINE": "django.db.backends.postgresql",  # psycopg 3 when installed (Django >= 4.2)
        "NAME": str(p["dbname"]),
        "USER": str(p.get("user") or ""),
        "PASSWORD": str(p.get("password") or ""),
        "HOST": str(p.get("host") or ""),
        "PORT": str(p.get("port") or ""),
    }


def use_database(dsn: str) -> None:
    if not settings.configured:
        settings.configure(DATABASES={"default": _database(dsn)}, USE_TZ=True, INSTALLED_APPS=[])
        django.setup()
        return
    connections["default"].close()
    try:
        del connections["default"]  # the wrapper is made again from the new settings
    except AttributeError:
        pass
    connections.settings["default"] = connections.configure_settings(
        {"default": _database(dsn)}
    )["default"]
