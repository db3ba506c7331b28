"""The lesson pages' shape, checked without building them (the build runs every cell; these run
in a second): each page is a text notebook with a Mirrors box, its PyTorch and JAX cells come in
pairs, no PyTorch cell reads a name a JAX cell bound last (or the reverse), each training page
shows a Python loop, its lax.scan form and the command's run, and docs/seeds.md maps every step
of every seed to a section that exists."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext", reason="the docs extra: pip install -e '.[docs]'")

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LESSONS = sorted((DOCS / "lessons").glob("*.md"))
sys.path.insert(0, str(DOCS / "_ext"))
import jaxnets_lessons

# Pages with a training loop (issue 21, item 3) and the command each is tied to.
TRAINING = {"01_mnist": "mnist", "06_cifar10": "cifar10", "07_two_layer": "two_layer",
            "11_thermometer": "thermometer", "12_linear_classifier": "linear_classifier"}


def cells(path: Path):
    return jupytext.read(path, fmt="md:myst").cells


def tags(cell) -> set[str]:
    return set(cell.metadata.get("tags", []))


def test_there_are_lessons():
    assert len(LESSONS) >= 1
    assert all(re.fullmatch(r"\d\d_[a-z0-9_]+\.md", p.name) for p in LESSONS), LESSONS


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_a_text_notebook_with_a_mirrors_box(path):
    text = path.read_text()
    assert text.startswith("---\njupytext:"), "a jupytext header first"
    assert "kernelspec:" in text.split("\n---\n", 1)[0] and "name: python3" in text
    assert re.search(r"^:::\{admonition\} Mirrors$", text, re.MULTILINE), "a Mirrors box under the title"
    titles = [line for c in cells(path) if c.cell_type == "markdown"
              for line in c.source.splitlines() if line.startswith("# ")]
    assert len(titles) == 1, ("one title", titles)
    assert not any(cell.get("outputs") for cell in cells(path)), "no stored outputs"


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_pytorch_and_jax_cells_come_in_pairs(path):
    """What the extension pairs: a pytorch cell, hidden cells, then a jax cell; nothing else
    between (markdown between them would break the pair)."""
    shown = [c for c in cells(path)
             if not (c.cell_type == "code" and tags(c) & {"remove-cell", "remove_cell"})]
    pairs = 0
    for i, cell in enumerate(shown):
        if cell.cell_type != "code":
            continue
        nxt = shown[i + 1] if i + 1 < len(shown) else None
        prev = shown[i - 1] if i else None
        if "pytorch" in tags(cell):
            assert nxt is not None and nxt.cell_type == "code" and "jax" in tags(nxt), \
                f"a pytorch cell not followed by its jax cell: {cell.source[:80]!r}"
            pairs += 1
        if "jax" in tags(cell):
            assert prev is not None and prev.cell_type == "code" and "pytorch" in tags(prev), \
                f"a jax cell without its pytorch cell: {cell.source[:80]!r}"
    assert pairs >= 1


def name_check(text: str) -> list[str]:
    """The warnings the extension's name check gives for a page's text."""
    warnings = []
    log = type("Log", (), {"warning": staticmethod(lambda m, **kw: warnings.append(m))})()
    saved, jaxnets_lessons.LOGGER = jaxnets_lessons.LOGGER, log
    try:
        jaxnets_lessons.check_sides(None, "page", [text])
    finally:
        jaxnets_lessons.LOGGER = saved
    return warnings


def page_of(*cells: tuple[str, str]) -> str:
    """A lesson page's text with these (tag, source) code cells."""
    head = ("---\njupytext:\n  text_representation:\n    format_name: myst\nkernelspec:\n"
            "  display_name: Python 3\n  language: python\n  name: python3\n---\n\n")
    return head + "".join(f"```{{code-cell}} ipython3\n:tags: [{tag}]\n{source}\n```\n\n"
                          for tag, source in cells)


@pytest.mark.parametrize("path", LESSONS, ids=lambda p: p.stem)
def test_no_cell_reads_the_other_frameworks_value(path):
    warnings = name_check(path.read_text())
    assert not warnings, warnings


def test_the_name_check_sees_a_clash():
    """A jax cell rebinding `res` that the next pytorch cell reads is reported; a module
    imported on one side and used on the other is not."""
    warnings = name_check(page_of(("pytorch", "import numpy as np\nres = [1]"),
                                  ("jax", "res = np.array(res)"),
                                  ("pytorch", "print(res)"),
                                  ("jax", "def f(res):\n    return res\nprint(f(1))")))
    assert len(warnings) == 2, warnings   # `res` in the jax cell (from pytorch), and back
    assert all("'res'" in w for w in warnings)


def test_the_name_check_sees_a_function_reading_a_rebound_global():
    """A Flax module defined in a jax cell reads `nn` when it runs; a pytorch cell rebinding
    `nn` to torch.nn before the module is used is reported (at the use)."""
    warnings = name_check(page_of(
        ("pytorch", "import torch"),
        ("jax", ("import flax.linen as nn\nclass Net(nn.Module):\n    @nn.compact\n"
                 "    def __call__(self, x):\n        return nn.Dense(3)(x)")),
        ("pytorch", "import torch.nn as nn"),
        ("jax", "model = Net()")))
    assert len(warnings) == 1 and "'Net'" in warnings[0] and "'nn'" in warnings[0], warnings


@pytest.mark.parametrize("page,command", sorted(TRAINING.items()))
def test_a_training_page_has_the_loop_its_scan_and_the_command(page, command):
    path = DOCS / "lessons" / f"{page}.md"
    if not path.exists():
        pytest.fail(f"{path.name} is missing")
    code = [c.source for c in cells(path) if c.cell_type == "code"]
    jax_code = [c.source for c in cells(path) if c.cell_type == "code" and "jax" in tags(c)]
    assert any("@jax.jit" in s for s in code), "a jitted step"
    # (indented too: the seed's loop may live in a function, as seed 003's training_loop does)
    assert any(re.search(r"^[ \t]*for \w+.* in .*:$", s, re.MULTILINE) for s in jax_code), \
        "the seed's loop as a visible Python for loop in a jax cell"
    assert any("jax.lax.scan(" in s for s in code), "the loop as one lax.scan"
    assert any(re.search(rf"\b{command}\.run\(", s) for s in code), \
        f"the tie to experiments.{command}.run"


def test_the_seeds_map_links_every_lesson_to_sections_that_exist():
    """docs/seeds.md: every step of every seed names a page section; each link's page exists and
    has a heading with that anchor (as MyST names it), and every lesson is linked."""
    from experiments import tour

    text = (DOCS / "seeds.md").read_text()
    assert [f"## Seed 00{n}" for n in range(5)] == re.findall(r"^## Seed 00\d", text, re.MULTILINE)
    links = re.findall(r"\]\((lessons/[^)#]+\.md)(?:#([^)]+))?\)", text)
    assert len(links) >= 100
    for path, anchor in links:
        page = DOCS / path
        assert page.is_file(), path
        if anchor:
            anchors = [a for _, a in tour.headings(page.read_text())]
            assert anchor in anchors, f"{path}#{anchor}: no such heading; it has {anchors}"
    assert {p.name for p in LESSONS} == {Path(p).name for p, _ in links}
    for line in re.findall(r"^\| (?!step|---).*", text, re.MULTILINE):
        assert "](lessons/" in line, f"a step without a place: {line}"
