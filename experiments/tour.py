"""The tour machinery shared by `experiments.tensors` and `experiments.autograd`.

A tour is an ordered table of `Section`s. A section's `code` is a snippet of JAX that is both what
the transcript shows and what runs: `run_section` feeds it, line by line, to a fresh Python
console (`code.InteractiveConsole`, the standard library's interactive interpreter) that has run
only the tour's printed `preamble`, and prints every line at its `>>> ` / `... ` prompt with the
output the console produced under it, as a terminal session shows it. So a transcript cannot show
code that did not run, and pasting the preamble and a section's lines into `python` reproduces
the section's output (tests/test_tour.py does exactly that). `run_tour` prints the chosen
sections and writes their values to metrics.json; `--section NAME` and `--list` are fields of
each tour's Config. Tests call a section with `call`.
"""

from __future__ import annotations

import code
import contextlib
import dataclasses
import io
import os
import sys
import textwrap
from collections.abc import Mapping, Sequence

import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from experiments import cli


def preamble(seed: int) -> tuple[str, ...]:
    """The lines every section's fresh console runs first (printed at the top of the tour)."""
    return ("import jax", "import jax.numpy as jnp", "import numpy as np",
            f"key = jax.random.key({seed})")


@dataclasses.dataclass(frozen=True)
class Section:
    """One tour stop: the JAX snippet `code` mirrors the PyTorch snippet `torch`.

    `code` is shown and run line by line, REPL-style (a blank line ends a `def`/`with`/`for`
    block, as at the prompt); `$out` in it becomes the tour's output folder. `values` names what
    goes to metrics.json and to the tests: a variable of the snippet or an index into one (str,
    e.g. 'path[1]'), or the index of an output the console echoed (int, in order). `note` is
    printed after the session.
    """

    name: str
    torch: str
    code: str
    values: Mapping[str, str | int] = dataclasses.field(default_factory=dict)
    note: str = ""


class SnippetError(RuntimeError):
    """A tour snippet raised: a bug in the tour, not a user error."""


class _Console(code.InteractiveConsole):
    """The interactive interpreter's loop; an exception in a snippet stops the tour."""

    def showtraceback(self):
        raise SnippetError(f"a tour snippet raised {sys.exc_info()[1]!r}") from sys.exc_info()[1]

    def showsyntaxerror(self, filename=None, **kwargs):
        raise SnippetError(f"a tour snippet does not parse: {sys.exc_info()[1]!r}")


def section_code(section: Section, out: str) -> str:
    return textwrap.dedent(section.code).strip("\n").replace("$out", repr(out))


def run_section(section: Section, seed: int = 0, out: str = "runs/tour") -> tuple[dict, list[str]]:
    """Run the section's snippet in a fresh console after the preamble.

    Returns:
        (values, transcript lines: each input line at its prompt, then what it printed).
    """
    console = _Console()   # a fresh namespace: {'__name__': '__console__', '__doc__': None}
    echoed: list = []

    def displayhook(value):   # the REPL's echo of an expression statement, recorded
        if value is not None:
            echoed.append(value)
        sys.__displayhook__(value)

    def push(line: str) -> tuple[bool, str]:
        buffer = io.StringIO()
        hook, sys.displayhook = sys.displayhook, displayhook
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                more = console.push(line)
        finally:
            sys.displayhook = hook
        return more, buffer.getvalue()

    for line in preamble(seed):
        more, printed = push(line)
        assert not more and not printed, (line, printed)
    echoed.clear()
    lines: list[str] = []
    more = False
    for line in section_code(section, out).splitlines():
        prompt = "..." if more else ">>>"
        lines.append(f"{prompt} {line}" if line else prompt)
        more, printed = push(line)
        lines += printed.splitlines()
    if more:
        raise SnippetError(f"section {section.name!r} ends inside a block: end it with a "
                           "blank line")
    # Read-only look-ups after the snippet ran: a name, or an index into one of its values.
    values = {k: plain(echoed[v] if isinstance(v, int) else eval(v, console.locals))
              for k, v in section.values.items()}
    return values, lines


def plain(value):
    """value with dtypes, devices and other non-array objects as their str (JSON-ready)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)) or hasattr(value, "tolist"):
        return value
    return str(value)


def check_section(section: str | None, sections: Sequence[Section]) -> None:
    """ConfigError unless section is None or one of the table's names."""
    names = [s.name for s in sections]
    cli.check(section is None or section in names, "section",
              f"unknown section {section!r}; choose one of: {', '.join(names)} (see --list)")


def heading(section: Section) -> str:
    return f"=== [{section.name}] PyTorch: {section.torch} ==="


def call(section: Section, seed: int = 0, out: str = "runs/tour") -> tuple[dict, str]:
    """Run one section by itself (what tests do): (values, the text the tour prints for it)."""
    values, lines = run_section(section, seed, out)
    parts = [heading(section), *lines]
    if section.note:
        parts += ["", note(section.note)]
    return values, "\n".join(parts) + "\n"


def preamble_text(seed: int) -> str:
    return "\n".join([
        "Each section below runs in a fresh Python session that first ran these lines; paste",
        "them, then a section's lines, into `python` and you get the section's output.",
        *(">>> " + line for line in preamble(seed))]) + "\n"


def run_tour(name: str, sections: Sequence[Section], *, section: str | None, list_only: bool,
             seed: int, out: str, progress: bool = True) -> dict:
    """Print the chosen sections (or the list) and write metrics.json; returns {name: values}."""
    say = print if progress else (lambda *a, **k: None)
    check_section(section, sections)
    if list_only:
        width = max(len(s.name) for s in sections)
        for s in sections:
            say(f"  {s.name:<{width}}  {s.torch}")
        return {}
    say(preamble_text(seed))
    results = {}
    for s in sections:
        if section not in (None, s.name):
            continue
        values, text = call(s, seed, out)
        say(text)
        results[s.name] = values
    path = cli.write_json(os.path.join(out, "metrics.json"),
                          {"experiment": name, "seed": seed, "sections": results})
    say(f"wrote {path}")
    return results


def note(text: str) -> str:
    return textwrap.fill(text, 96, initial_indent="note: ", subsequent_indent="      ")
