"""The tours' transcripts are true, and they are the lesson pages' cells.

The main test does what a learner does: it runs `python -m experiments.tensors` / `autograd` as a
command, takes the printed text, and pastes each page's preamble and each section, exactly as
printed, into a real `python -i` (one fresh interpreter per section, stdin as the paste): what
Python prints must be the transcript's `# ` comment lines, and nothing may fail. The others
check that the tour reads the pages as jupytext (and so myst-nb) does, that its anchors are the
built site's, and that a page breaking the tour's rules is refused with a clear message.
"""

from __future__ import annotations

import concurrent.futures
import os
import re
import subprocess
import sys
import textwrap

import pytest

from experiments import tour
from experiments.tour import LessonsMissing, SnippetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PAGES = sorted(os.path.join(tour.LESSONS, f) for f in os.listdir(tour.LESSONS)
               if f.endswith(".md"))
PREAMBLE = re.compile(r"^## The preamble of (\S+): ")
SECTION = re.compile(r"^## \[(\S+)\] PyTorch:$")
POINTER = re.compile(r"^## explained in (\S+)#(\S+)$")


def parse(transcript: str) -> tuple[dict[str, list[str]], dict[str, tuple[str, list[str]]]]:
    """({page: its preamble block}, {section: (its page, its block)}) from a tour's printed
    text; a block is the lines as printed, from its first `##` line to its pointer."""
    preambles: dict[str, list[str]] = {}
    sections: dict[str, tuple[str, list[str]]] = {}
    block: list[str] | None = None
    page = None
    for line in transcript.splitlines():
        if m := PREAMBLE.match(line):
            page = m.group(1)
            block = preambles[page] = [line]
        elif m := SECTION.match(line):
            block = []
            sections[m.group(1)] = (page, block)
            block.append(line)
        elif block is not None:
            block.append(line)
            if POINTER.match(line):
                block = None
    for block in preambles.values():
        while block and not block[-1].strip():
            block.pop()
    return preambles, sections


def outputs(block: list[str]) -> list[str]:
    """What Python printed, as the transcript shows it: the `# ` comment lines, unprefixed."""
    return [line[2:] if line.startswith("# ") else "" for line in block
            if line.startswith("# ") or line == "#"]


def paste(text: str, cwd: str) -> subprocess.CompletedProcess:
    """`text` typed (pasted) into an interactive Python 3 prompt: stdout is what it printed."""
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.run([sys.executable, "-q", "-i"], input=text, cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600, check=False)


def paste_all(jobs: dict[str, str], cwd: str) -> dict[str, subprocess.CompletedProcess]:
    """Paste each text into its own fresh interpreter, a few at a time."""
    with concurrent.futures.ThreadPoolExecutor(max(2, min(4, os.cpu_count() or 1))) as pool:
        done = {name: pool.submit(paste, text, cwd) for name, text in jobs.items()}
        return {name: future.result() for name, future in done.items()}


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tensors", "autograd"])
def test_every_section_pasted_as_printed_into_python_prints_its_comments(name, tmp_path):
    out = str(tmp_path / "tour")
    done = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--out", out], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    preambles, sections = parse(done.stdout)
    assert list(sections) == [s.name for s in tour.load(name)]
    assert set(preambles) == {s.page for s in tour.load(name)}
    for page, block in preambles.items():
        assert any(line.startswith("key = jax.random.key(0)") for line in block), page
        assert not outputs(block), page
    jobs = {section: "\n".join(preambles[page] + block) + "\n"
            for section, (page, block) in sections.items()}
    pasted = paste_all(jobs, cwd=str(tmp_path))
    for section, (page, block) in sections.items():
        got = pasted[section]
        assert "Traceback" not in got.stderr and "Error" not in got.stderr, (section,
                                                                             got.stderr[-2000:])
        assert outputs(block), f"[{section}] shows nothing"
        assert got.stdout.splitlines() == outputs(block), (
            f"[{section}] prints something else when pasted into python")


def test_a_paste_that_did_not_run_is_caught(tmp_path):
    """A hidden definition, a wrong number, a key the preamble did not make: each one differs."""
    preamble = ["import jax", "import jax.numpy as jnp", "key = jax.random.key(0)"]
    jobs = {
        "hidden": ["print(y)", "# [5.5 3. ]"],
        "number": ["print(jnp.ones(2))", "# [1. 2.]"],
        "other_key": ["print(jax.random.normal(key, (1,)))",
                      "# " + str(jax_normal(1, (1,)))],
        "true": ["print(jnp.ones(2))", "# [1. 1.]", "jnp.ones(2)",
                 "# Array([1., 1.], dtype=float32)"],
    }
    got = paste_all({k: "\n".join(preamble + v) + "\n" for k, v in jobs.items()},
                    cwd=str(tmp_path))
    assert "NameError: name 'y' is not defined" in got["hidden"].stderr
    assert got["number"].stdout.splitlines() != outputs(jobs["number"])
    assert got["other_key"].stdout.splitlines() != outputs(jobs["other_key"])
    assert got["true"].stdout.splitlines() == outputs(jobs["true"])
    assert "Error" not in got["true"].stderr


def jax_normal(seed, shape):
    import jax

    return jax.random.normal(jax.random.key(seed), shape)


def test_parse_reads_preambles_sections_blocks_and_outputs():
    text = textwrap.dedent("""\
        ## The tensors tour: ...

        ## The preamble of docs/lessons/p.md: every section below runs after it.
        import jax
        key = jax.random.key(0)

        ## [a] PyTorch:
        ##     print(x)
        ## JAX:
        x = 1
        print(x)
        # 1
        for i in range(2):
            print(i)

        # 0
        #
        # 1
        ## explained in docs/lessons/p.md#a
        ## wrote m.json
        """)
    preambles, sections = parse(text)
    assert preambles == {"docs/lessons/p.md": [
        "## The preamble of docs/lessons/p.md: every section below runs after it.",
        "import jax", "key = jax.random.key(0)"]}
    page, block = sections["a"]
    assert page == "docs/lessons/p.md" and block[0] == "## [a] PyTorch:"
    assert block[-1] == "## explained in docs/lessons/p.md#a"
    assert outputs(block) == ["1", "0", "", "1"]


# --- the pages as the tour reads them -------------------------------------------------------------


@pytest.mark.parametrize("path", PAGES, ids=os.path.basename)
def test_read_cells_reads_every_page_as_jupytext_does(path):
    jupytext = pytest.importorskip("jupytext")
    with open(path, encoding="utf-8") as f:
        text = f.read()
    theirs = [c for c in jupytext.reads(text, fmt="md:myst").cells if c.cell_type == "code"]
    ours = tour.read_cells(text, path)
    assert [c.source for c in ours] == [c.source for c in theirs]
    assert [c.metadata for c in ours] == [dict(c.metadata) for c in theirs]


def test_the_anchors_are_the_sites_and_mysts():
    """The pointer under each section names the heading above its cell by the id the built site
    gives it (docutils' make_id) and the anchor MyST links use (GitHub's slug): the same."""
    slugs = pytest.importorskip("myst_parser.slugs")
    from docutils.nodes import make_id

    for name in ("tensors", "autograd"):
        for section in tour.load(name):
            with open(os.path.join(ROOT, section.page), encoding="utf-8") as f:
                titles = {anchor: title for title, anchor in tour.headings(f.read())}
            title = titles[section.anchor]
            assert slugs.github_slugify(title) == section.anchor == make_id(title), (
                f"{section.where}: name the heading {title!r} with letters, digits, spaces and "
                "hyphens, so that its anchor is the same on the site and in MyST")


def test_every_section_has_its_pytorch_cell_its_page_and_names():
    for name in ("tensors", "autograd"):
        sections = tour.load(name)
        assert len({s.name for s in sections}) == len(sections)
        for s in sections:
            assert s.torch.strip() and s.code.strip() and "key = jax.random.key(" in s.preamble
            assert os.path.exists(os.path.join(ROOT, s.page))


def page(*cells: str) -> str:
    """A MyST notebook of the given cells (each: option lines, a blank line, code)."""
    header = textwrap.dedent("""\
        ---
        jupytext:
          text_representation:
            extension: .md
            format_name: myst
        kernelspec:
          display_name: Python 3
          language: python
          name: python3
        ---
        # A page

        ## A section
        """)
    return header + "".join(f"\n```{{code-cell}} ipython3\n{c}\n```\n" for c in cells)


PREAMBLE_CELL = ":tour: t\n:section: preamble\n\nimport jax\nkey = jax.random.key(0)\nout = 'x'"
TORCH_CELL = ":tags: [pytorch]\n\nprint(1)"


def load_page(tmp_path, *cells: str):
    folder = tmp_path / "lessons"
    folder.mkdir(exist_ok=True)
    (folder / "01_a.md").write_text(page(*cells))
    return tour.load("t", str(folder))


def test_a_section_runs_after_its_preamble_with_the_seed_and_out_filled_in(tmp_path):
    sections = load_page(tmp_path, PREAMBLE_CELL, TORCH_CELL,
                         ":tags: [jax]\n:tour: t\n:section: a\n:values: {z: z, shown: 0, key: 1}"
                         "\n\nz = 41\nprint(z + 1)\nfor i in range(1):\n    z = z + i\n\nkey")
    (a,) = sections
    assert (a.name, a.anchor, a.torch, a.values) == ("a", "a-section", "print(1)",
                                                     {"z": "z", "shown": 0, "key": 1})
    run = tour.run_section(a, seed=3, out="folder")
    assert run.values["z"] == 41 and run.values["shown"] == 42
    assert "[0 3]" in str(run.values["key"])
    assert tour.preamble_code(a, 3, "o") == "import jax\nkey = jax.random.key(3)\nout = 'o'"
    text = tour.section_text(a, run)
    assert "print(z + 1)\n# 42\n" in text and text.endswith("## explained in " + a.where + "\n")
    assert "## [a] PyTorch:\n##     print(1)\n## JAX:\n" in text


@pytest.mark.parametrize("code,message", [
    ("x = 1\n# a comment line\nx", "a comment on a line of its own"),
    ("x = 1\nx\nx + 1", "line 2 shows a value"),
    ("for i in range(2):\n    i", "shows a value"),
    ("y", "NameError"),
    ("def f():\n    x = 1\n\n    return x", "IndentationError|does not parse|unexpected indent"),
    ("[list(range(30))]", "long container"),
])
def test_a_cell_that_breaks_the_rules_is_refused(tmp_path, code, message):
    with pytest.raises(SnippetError, match=message):
        sections = load_page(tmp_path, PREAMBLE_CELL, TORCH_CELL,
                             f":tags: [jax]\n:tour: t\n:section: a\n\n{code}")
        tour.run_section(sections[0])


def test_a_section_needs_its_pytorch_cell_and_its_preamble(tmp_path):
    jax_cell = ":tags: [jax]\n:tour: t\n:section: a\n\nprint(1)"
    with pytest.raises(SnippetError, match="must follow its `pytorch` cell"):
        load_page(tmp_path, PREAMBLE_CELL, jax_cell)
    with pytest.raises(SnippetError, match="section: preamble"):
        load_page(tmp_path, TORCH_CELL, jax_cell)
    with pytest.raises(SnippetError, match="must follow its `pytorch` cell"):
        load_page(tmp_path, PREAMBLE_CELL, TORCH_CELL, ":tags: [remove-input]\n\nx = 1", jax_cell)
    assert load_page(tmp_path, PREAMBLE_CELL, TORCH_CELL, ":tags: [remove-cell]\n\nx = 1",
                     jax_cell)[0].torch == "print(1)"


def test_without_the_pages_the_tour_says_so_in_one_line(tmp_path, monkeypatch, capsys):
    from experiments import tensors

    with pytest.raises(LessonsMissing, match="checkout of jaxnets"):
        tour.load("tensors", str(tmp_path))
    monkeypatch.setattr(tour, "LESSONS", str(tmp_path / "docs" / "lessons"))
    assert tensors.main(["--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "there are none in" in err and "checkout of jaxnets" in err
    assert len(err.strip().splitlines()) == 1
