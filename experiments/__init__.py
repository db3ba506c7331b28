"""One module per tutorial experiment: `python -m experiments.<name> --help`.

`EXPERIMENTS` is the one list of them: every module here but the harness they share (`HARNESS`).
The report runs each, the README's test asks for each one's row, the tests and benchmarks read
it; so adding an experiment is its module, its test and its row in the README.
"""

from __future__ import annotations

import pkgutil

# The modules here that are not experiments: the command line, the tours' machinery, the report.
HARNESS = frozenset({"cli", "tour", "report"})

EXPERIMENTS: tuple[str, ...] = tuple(sorted(
    m.name for m in pkgutil.iter_modules(__path__)
    if m.name not in HARNESS and not m.name.startswith("_")))
