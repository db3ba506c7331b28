"""The tour machinery shared by `experiments.tensors` and `experiments.autograd`.

A tour is an ordered table of `Section`s; each section's `fn(ctx) -> (values, text)` runs the JAX
counterpart of one PyTorch snippet. `run_tour` prints the chosen sections under headings naming
the snippet and writes their values to metrics.json; `--section NAME` and `--list` are
fields of each tour's Config. Tests call a section with `call`.
"""

from __future__ import annotations

import dataclasses
import os
import textwrap
import zlib
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import jax

from experiments import cli


class Context(NamedTuple):
    """What a section gets: its own PRNG key and the output folder."""

    key: jax.Array
    out: str


@dataclasses.dataclass(frozen=True)
class Section:
    """One tour stop: `fn(ctx) -> (values, text)` mirrors the PyTorch snippet `torch`."""

    name: str
    torch: str
    fn: Callable[[Context], tuple[dict, str]]


def section_key(seed: int, name: str) -> jax.Array:
    """The section's key: independent of which other sections run."""
    return jax.random.fold_in(jax.random.key(seed), zlib.crc32(name.encode()) & 0x7FFFFFFF)


def check_section(section: str | None, sections: Sequence[Section]) -> None:
    """ConfigError unless section is None or one of the table's names."""
    names = [s.name for s in sections]
    cli.check(section is None or section in names, "section",
              f"unknown section {section!r}; choose one of: {', '.join(names)} (see --list)")


def call(section: Section, seed: int = 0, out: str = "runs/tour") -> tuple[dict, str]:
    """Run one section by itself (what tests do)."""
    return section.fn(Context(section_key(seed, section.name), out))


def heading(section: Section) -> str:
    return f"=== [{section.name}] PyTorch: {section.torch} ==="


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
    results = {}
    for s in sections:
        if section not in (None, s.name):
            continue
        values, text = call(s, seed, out)
        say(heading(s))
        say(text.rstrip() + "\n")
        results[s.name] = values
    path = cli.write_json(os.path.join(out, "metrics.json"),
                          {"experiment": name, "seed": seed, "sections": results})
    say(f"wrote {path}")
    return results


def show(code: str, value: Any) -> str:
    """`code` and its value, the way a notebook cell shows `Out[]` (strings as they are)."""
    shown = value if isinstance(value, str) else repr(value)
    return f">>> {code}\n{textwrap.indent(shown, '    ')}"


def note(text: str) -> str:
    return textwrap.fill(text, 96, initial_indent="note: ", subsequent_indent="      ")


def text(*parts: str) -> str:
    return "\n".join(parts)
