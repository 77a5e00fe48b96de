"""Django for the tests, without a settings module: ``configure()`` sets
Django up once per process (Django allows no second time) with everything
any test needs (a database, a URLconf answering "django home" at /, hosts,
a secret), and ``use_database(dsn)`` points Django's ``default`` database at
a test's database (closing the connection to the previous one), so
``django.db.connection`` is the real PostgreSQL connection of that test;
``use_sqlite_database(path)`` points it at a test's SQLite file instead."""

from __future__ import annotations

import sys
import types

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


URLCONF = "queuert_test_django_urls"


def configure(database: dict[str, str] | None = None) -> None:
    """Django's settings for this test process, once; later calls do nothing."""
    if settings.configured:
        return
    from django.http import HttpResponse
    from django.urls import path

    urls = types.ModuleType(URLCONF)
    urls.urlpatterns = [path("", lambda request: HttpResponse("django home"))]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = urls
    settings.configure(
        DATABASES={"default": database or {"ENGINE": "django.db.backends.postgresql", "NAME": "postgres"}},
        USE_TZ=True, INSTALLED_APPS=[], ROOT_URLCONF=URLCONF, ALLOWED_HOSTS=["testserver"],
        SECRET_KEY="queuert-tests", MIDDLEWARE=[], DEBUG=False,
    )
    django.setup()


def use_database(dsn: str) -> None:
    _use(_database(dsn))


def use_sqlite_database(path: str) -> None:
    _use({"ENGINE": "django.db.backends.sqlite3", "NAME": path})


def _use(database: dict[str, str]) -> None:
    if not settings.configured:
        configure(database)
        return
    connections["default"].close()
    try:
        del connections["default"]  # the wrapper is made again from the new settings
    except AttributeError:
        pass
    connections.settings["default"] = connections.configure_settings(
        {"default": database}
    )["default"]
