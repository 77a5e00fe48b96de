"""queuert for Django: add ``"queuert.contrib.django"`` to ``INSTALLED_APPS``.

* ``manage.py queuert_migrate`` installs or upgrades queuert in the database
  of ``DATABASES["default"]`` (its connection settings are reused: no second
  DSN to keep in step);
* ``manage.py queuert_worker [MODULE:ATTR]`` runs a worker on that database;
* :func:`conninfo` gives that libpq conninfo to your own code.

Optional settings, all in one dict::

    QUEUERT = {
        "DATABASE": "default",        # the DATABASES alias whose settings are reused
        "DSN": None,                  # or an explicit conninfo, instead of DATABASE
        "SCHEMA": "queuert",
        "WORKER": "myapp.jobs:worker",  # default MODULE:ATTR of queuert_worker
    }

Starting a chain inside ``transaction.atomic()`` on Django's own connection
(Django 4.2+ on psycopg 3) is in docs/integrations.md.
"""

from __future__ import annotations

from queuert.contrib.django.conf import conninfo, conninfo_from_settings, schema, worker_target

__all__ = ["conninfo", "conninfo_from_settings", "schema", "worker_target"]
