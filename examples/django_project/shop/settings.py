"""Settings of the example: one PostgreSQL database, from $DATABASE_URL."""

import os

from psycopg.conninfo import conninfo_to_dict

_db = conninfo_to_dict(os.environ.get("DATABASE_URL", "postgresql://postgres@127.0.0.1:5432/shop"))

SECRET_KEY = "example-only"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = ["queuert.contrib.django", "signups"]
DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": _db.get("dbname", "shop"),
        "USER": _db.get("user", ""),
        "PASSWORD": _db.get("password", ""),
        "HOST": _db.get("host", ""),
        "PORT": _db.get("port", ""),
        "OPTIONS": {"application_name": "shop"},
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
# queuert reuses DATABASES["default"]; only the worker needs naming
QUEUERT = {"WORKER": "signups.jobs:worker"}
