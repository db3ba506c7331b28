"""The README cannot rot: its commands parse, its code links name symbols the files define, its
relative links exist, and CI runs exactly its quick start."""

from __future__ import annotations

import importlib
import re
import shlex
from pathlib import Path

import pytest

from experiments import EXPERIMENTS, cli

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text()


def readme_commands() -> list[str]:
    """Every `python -m experiments.<name> ...` in the README (code blocks and tables)."""
    found = re.findall(r"python -m (experiments\.[a-z_0-9]+[^`|\n#&]*)", README)
    return sorted({c.strip() for c in found})


def test_readme_has_experiment_commands():
    names = {c.split()[0] for c in readme_commands()}
    for name in (*EXPERIMENTS, "report"):  # a new experiment needs its row
        assert f"experiments.{name}" in names, name


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_parses(command):
    module, *argv = shlex.split(command)
    mod = importlib.import_module(module)
    cli.parse(mod.Config, mod.__doc__, argv)  # unknown flags, bad values, bad Config: raises


@pytest.mark.parametrize("module", sorted({c.split()[0] for c in readme_commands()}))
def test_help(module, capsys):
    with pytest.raises(SystemExit) as e:
        importlib.import_module(module).main(["--help"])
    assert e.value.code == 0 and "usage: python -m " + module in capsys.readouterr().out


def test_code_links_name_a_symbol_defined_in_the_file():
    """Code links name a symbol, not a line number (lines move): [`name`](file.py) where the file
    defines `name` (def, class or assignment)."""
    assert not re.findall(r"\]\([^)]+\.py#L\d+\)", README), "link by symbol, not line number"
    links = re.findall(r"\[`([^`]+)`\]\(([^)#]+\.py)\)", README)
    assert len(links) >= 15
    for symbol, path in links:
        if symbol == path:  # a link to the file itself
            continue
        text = (ROOT / path).read_text()
        defined = rf"^\s*(def|class) {re.escape(symbol)}\b|^{re.escape(symbol)}\s*[:=]"
        assert re.search(defined, text, re.MULTILINE), (
            f"README links {symbol} to {path}, which does not define it")


def test_lesson_links_name_a_heading_of_the_page():
    """[text](docs/lessons/page.md#anchor): the page has a heading with that anchor (as MyST and
    the built site name it)."""
    from experiments import tour

    links = re.findall(r"\]\((docs/lessons/[^)#]+\.md)#([^)]+)\)", README)
    assert len(links) >= 7
    for path, anchor in links:
        anchors = [a for _, a in tour.headings((ROOT / path).read_text())]
        assert anchor in anchors, f"README links {path}#{anchor}; its headings: {anchors}"


def test_relative_links_exist():
    for target in re.findall(r"\]\(((?!https?:)[^)#]+)(?:#[^)]*)?\)", README):
        assert (ROOT / target).exists(), target


def test_ci_runs_the_quick_start():
    block = re.search(r"## Quick start\n\n```bash\n(.*?)```", README, re.DOTALL).group(1)
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    ci = (ROOT / ".ci" / "run").read_text()
    for command in commands:
        assert command in ci.splitlines(), command


def test_the_seed_study_quoted_is_the_committed_one():
    """The README's distributions over seeds are docs/reproduction/seed_study.json's (written
    by `report --seeds 10`; the seed 000 lesson checks its runs against the same file)."""
    import json

    study = json.loads((ROOT / "docs" / "reproduction" / "seed_study.json").read_text())
    assert study["dataset"] == "fashion_mnist" and study["seeds"] >= 10
    for key in ("mnist/sgd", "mnist/adam"):
        for side in ("jaxnets", "pytorch"):
            f = study["figures"][key][side]
            quoted = f"{f['mean']:.2f} ± {f['sd']:.2f}% ({f['min']:.2f}-{f['max']:.2f})"
            assert quoted in README, (key, side, quoted)
