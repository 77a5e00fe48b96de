#!/usr/bin/env python
"""The smallest Django project that uses queuert (tests_py/test_django.py runs it).

    export DATABASE_URL=postgresql://postgres@127.0.0.1:5432/shop
    python manage.py migrate && python manage.py queuert_migrate
    python manage.py signup ada@example.com          # a member and its job, one commit
    python manage.py queuert_worker                   # runs signups.jobs:worker
"""

import os
import sys

if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "shop.settings")
    from django.core.management import execute_from_command_line

    execute_from_command_line(sys.argv)
