"""README's speed table is made from benchmarks/results, so a results file
committed without the table (or a hand edit of the table) is caught here."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `pytest` (unlike `python -m pytest`) leaves the checkout off the path
    sys.path.insert(0, str(ROOT))

from benchmarks import readme_table  # noqa: E402


def test_readme_speed_table_matches_the_committed_results() -> None:
    text = (ROOT / "README.md").read_text()
    _, _, rest = text.partition(readme_table.START + "\n")
    shown, sep, _ = rest.partition(readme_table.END)
    assert sep, "README.md lost its speed-table markers"
    assert shown == readme_table.table(), (
        "README's speed table is stale: run `python -m benchmarks.readme_table --write`")


def test_every_row_names_a_figure_some_run_measured() -> None:
    """A row whose (workload, metric) no results file has would read 'not
    measured yet' for ever: a renamed metric must be renamed here too."""
    table = readme_table.table()
    missing = [line for line in table.splitlines() if "not measured yet" in line]
    assert not missing, missing
