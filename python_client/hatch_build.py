"""Hatch build hook: ship the engine SQL inside the wheel.

The SQL lives at the repository root (``../sql`` and ``../migrations`` seen
from this directory, and ``../sqlite`` for the SQLite engine). In a wheel it
becomes package data ``queuert/_sql``, ``queuert/_migrations`` and
``queuert/_sqlite/_engine``, where :mod:`queuert.migrate` and
:mod:`queuert._sqlite` look for it first. When the wheel is built from an
sdist, the sdist carries the files as ``sql/``, ``migrations/`` and
``sqlite/`` next to this file, so both locations are tried.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface


class CustomBuildHook(BuildHookInterface):  # type: ignore[type-arg]
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        if version == "editable":
            # An editable install reads ../sql and ../migrations in place, so
            # edits to the engine take effect without reinstalling.
            return
        root = Path(self.root)
        for name, target in (
            ("sql", "queuert/_sql"),
            ("migrations", "queuert/_migrations"),
            ("sqlite", "queuert/_sqlite/_engine"),
        ):
            for candidate in (root / name, root.parent / name):
                if candidate.is_dir():
                    build_data["force_include"][str(candidate)] = target
                    break
            else:
                raise RuntimeError(
                    f"queuert build: cannot find the {name}/ directory "
                    f"(looked in {root} and {root.parent})"
                )
