"""The tours: `python -m experiments.tensors` / `autograd` print and run the lesson pages' cells.

One source per snippet. A tour section is a code cell of a lesson page (`docs/lessons/*.md`, MyST
notebooks) tagged `jax` whose metadata names the tour and the section:

    ```{code-cell} ipython3
    :tags: [jax]
    :tour: tensors
    :section: add
    :values: {x: x, plus: 0}
    ...
    ```

The `pytorch` cell before it (hidden cells may sit between) is the section's PyTorch side, and a
visible cell of the same page with `section: preamble` is what every section of that page runs
first (imports, `key = jax.random.key(0)`, and `out = ...` where the page writes files). The tour
reads the pages in file order with a small MyST parser (`read_cells`: no jupytext at run time;
tests/test_tour.py checks it reads every page as jupytext does), runs each chosen section in a
fresh console (`code.InteractiveConsole`, the standard library's interactive interpreter) after
its page's preamble, with `--seed` in place of the preamble's `jax.random.key(...)` literal and
`--out` in place of its `out = ...` assignment, and prints it as text that can be pasted into
`python` as it is: code lines as they are, each output line as a comment (`# `) under the
statement that printed it, the tour's own lines (the PyTorch side, the page it comes from) as
`## ` comments. So a transcript cannot show code that did not run, and the page shows the same
code and outputs: a tour cell shows values with print() and may end with one bare expression
(the only one a notebook displays), has no comment-only lines (they would read as output) and
no blank lines inside its blocks (a blank line ends a block at the prompt), and runs after the
preamble alone. `values` names what goes to metrics.json and to the tests: a variable of the
snippet or an expression over them (str, e.g. 'path[1]'), or the index of something the snippet
showed (int: the arguments of each print() call, then the last line's value, in order).

`run_tour` prints the chosen sections and writes their values to metrics.json; `--section NAME`
and `--list` are fields of each tour's Config. Tests and the pages' hidden checks call `call` /
`values`.
"""

from __future__ import annotations

import ast
import builtins
import code
import contextlib
import dataclasses
import io
import os
import re
import sys
import tempfile
import textwrap
from collections.abc import Mapping

import yaml  # (flax's dependency: the pages' cell options are YAML)

import jaxnets.prng  # noqa: F401  (pins jax.random's bits: see jaxnets/prng.py)
from experiments import cli
from jaxnets.errors import JaxnetsError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LESSONS = os.path.join(ROOT, "docs", "lessons")
PREAMBLE = "preamble"
HIDDEN = {"remove-cell"}   # what may sit between a pair (myst-nb drops it before pairing)
KEY_LITERAL = re.compile(r"jax\.random\.key\((\d+)\)")
OUT_LINE = re.compile(r"^out = .*$", re.MULTILINE)


class LessonsMissing(JaxnetsError, FileNotFoundError):
    """The lesson pages the tour prints are not there (an installed package, not a checkout)."""


class SnippetError(RuntimeError):
    """A tour cell breaks the tour's rules or raised: a bug in a page, not a user error."""


# --- the pages ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Cell:
    """A code cell of a MyST notebook: its source and metadata as jupytext reads them, the line
    of its opening fence (1-based) and the anchor of the heading it sits under ('' before any)."""

    source: str
    metadata: dict
    line: int
    anchor: str = ""


_FENCE = re.compile(r"^(`{3,}|~{3,}|:{3,})(.*)$")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def github_slug(title: str) -> str:
    """The anchor MyST gives a heading (myst_parser.slugs.github_slugify), from its text."""
    return re.sub(r"[^\w\u4e00-\u9fff\- ]", "", title.lower().replace(" ", "-"))


def _heading_text(markdown: str) -> str:
    """A heading's text as MyST slugs it: inline code and plain text, markup removed."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", markdown)   # [text](link) -> text
    return re.sub(r"(?<!\w)[*_]+|[*_]+(?!\w)|`", "", text)     # emphasis, code ticks


def _options(lines: list[str], where: str) -> tuple[dict, list[str]]:
    """A code cell's options (`:key: value` lines or a `---` YAML block) and the lines after
    them, split as jupytext's MyST reader splits the fence's content."""
    content = "\n".join(lines) + "\n" if lines else ""
    block = None
    if content.startswith("---"):
        content = "\n".join(content.splitlines()[1:])
        match = re.search(r"^-{3,}", content, re.MULTILINE)
        block, content = ((content[:match.start()], content[match.end() + 1:]) if match
                          else (content, ""))
        block = textwrap.dedent(block)
    elif content.lstrip().startswith(":"):
        rest = content.splitlines()
        n = next((i for i, line in enumerate(rest) if not line.lstrip().startswith(":")),
                 len(rest))
        block, content = "\n".join(line.lstrip()[1:] for line in rest[:n]), "\n".join(rest[n:])
    try:
        options = (yaml.safe_load(block) or {}) if block is not None else {}
    except yaml.YAMLError as e:
        raise SnippetError(f"{where}: the cell's options are not valid YAML: {e}") from e
    return options, content.splitlines()


def read_cells(text: str, where: str = "<page>") -> list[Cell]:
    """The top-level `{code-cell}` cells of a MyST notebook, in order (fences of other kinds,
    and what is inside them, are skipped), each with the anchor of the heading above it."""
    return _parse(text, where)[0]


def headings(text: str) -> list[tuple[str, str]]:
    """(title, anchor) of a MyST page's headings of levels 1-3, the ones MyST anchors."""
    return _parse(text, "<page>")[1]


def _parse(text: str, where: str) -> tuple[list[Cell], list[tuple[str, str]]]:
    lines = text.splitlines()
    cells: list[Cell] = []
    titles: list[tuple[str, str]] = []
    slugs: set[str] = set()
    anchor = ""
    i = 0
    if lines and lines[0].strip() == "---":   # the jupytext front matter
        i = next((j for j in range(1, len(lines)) if lines[j].strip() == "---"), len(lines)) + 1
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        heading = _HEADING.match(line)
        if heading and len(heading.group(1)) <= 3:
            title = _heading_text(heading.group(2))
            slug = github_slug(title)
            anchor, n = slug, 1
            while anchor in slugs:
                anchor, n = f"{slug}-{n}", n + 1
            slugs.add(anchor)
            titles.append((title, anchor))
        if not fence:
            i += 1
            continue
        mark = fence.group(1)
        end = next((j for j in range(i + 1, len(lines))
                    if lines[j].startswith(mark[0] * len(mark))
                    and not lines[j].strip(mark[0]).strip()), len(lines))
        if mark[0] != ":" and fence.group(2).startswith("{code-cell}"):
            options, body = _options(lines[i + 1:end], f"{where}:{i + 1}")
            if body and not body[0].strip():
                body = body[1:]
            cells.append(Cell("\n".join(body), options, i + 1, anchor))
        i = end + 1
    return cells, titles


@dataclasses.dataclass(frozen=True)
class Section:
    """One tour stop: the JAX cell `code` of `page`, under the heading `anchor`, mirroring the
    PyTorch cell `torch`, run after the page's `preamble`."""

    tour: str
    name: str
    page: str                  # e.g. docs/lessons/02_tensors.md (relative to the checkout)
    anchor: str
    torch: str
    code: str
    preamble: str
    values: Mapping[str, str | int] = dataclasses.field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"{self.page}#{self.anchor}"


def _tags(cell: Cell) -> set[str]:
    return set(cell.metadata.get("tags") or [])


def _check_cell(page: str, cell: Cell, name: str) -> None:
    """The rules a tour cell's source must follow to print as a pasteable transcript."""
    where = f"{page}:{cell.line} ({name})"
    for line in cell.source.splitlines():
        if line.lstrip().startswith("#"):
            raise SnippetError(f"{where}: a comment on a line of its own would read as output in "
                               f"the transcript; put it at the end of a code line: {line!r}")
    try:
        ast.parse(cell.source)
    except SyntaxError as e:
        raise SnippetError(f"{where}: does not parse: {e}") from e


def _load_page(path: str, text: str, tour: str) -> tuple[str | None, list[Section]]:
    page = os.path.relpath(path, ROOT).replace(os.sep, "/")
    cells = read_cells(text, page)
    preamble = None
    found: list[tuple[Cell, str]] = []
    for index, cell in enumerate(cells):
        if cell.metadata.get("tour") != tour:
            continue
        name = str(cell.metadata.get("section", ""))
        _check_cell(page, cell, name)
        if name == PREAMBLE:
            if preamble is not None:
                raise SnippetError(f"{page}:{cell.line}: a second {tour} preamble on the page")
            if len(KEY_LITERAL.findall(cell.source)) != 1:
                raise SnippetError(f"{page}:{cell.line}: the preamble must make the key once, "
                                   "as `key = jax.random.key(0)` (the tour puts --seed there)")
            preamble = cell.source
            continue
        if not name or "jax" not in _tags(cell):
            raise SnippetError(f"{page}:{cell.line}: a {tour} tour cell needs `section: NAME` "
                               "and the tag `jax`")
        torch = next((c for c in reversed(cells[:index]) if _tags(c) & {"pytorch", "jax"}), None)
        if torch is None or "pytorch" not in _tags(torch) or any(
                not (_tags(c) & HIDDEN) for c in cells[cells.index(torch) + 1:index]):
            raise SnippetError(f"{page}:{cell.line}: section {name!r} must follow its `pytorch` "
                               "cell (hidden cells may sit between)")
        found.append((cell, torch.source))
    sections = []
    for cell, torch in found:
        if preamble is None:
            raise SnippetError(f"{page}: the {tour} sections need a cell with `tour: {tour}` and "
                               "`section: preamble` on the page")
        values = cell.metadata.get("values") or {}
        if not isinstance(values, dict):
            raise SnippetError(f"{page}:{cell.line}: `values` must be a mapping")
        sections.append(Section(tour, str(cell.metadata["section"]), page, cell.anchor, torch,
                                cell.source, preamble, values))
    return preamble, sections


_CACHE: dict[tuple, tuple[Section, ...]] = {}


def load(tour: str, lessons: str | None = None) -> tuple[Section, ...]:
    """The tour's sections, from the lesson pages in file order.

    Raises:
        LessonsMissing: the pages are not there (the tours run from a checkout of jaxnets).
        SnippetError: a page's tour cells break the tour's rules.
    """
    lessons = lessons or LESSONS
    try:
        names = sorted(f for f in os.listdir(lessons) if f.endswith(".md"))
    except OSError:
        names = []
    if not names:
        raise LessonsMissing(
            f"the tour prints the lesson pages' cells, and there are none in {lessons}: run it "
            "from a checkout of jaxnets (git clone, then python -m experiments.<tour> there)")
    texts = {}
    for f in names:
        with open(os.path.join(lessons, f), encoding="utf-8") as file:
            texts[os.path.join(lessons, f)] = file.read()
    stamp = (tour, lessons, hash(tuple(texts.items())))
    if stamp not in _CACHE:
        sections: list[Section] = []
        for path, text in texts.items():
            sections += _load_page(path, text, tour)[1]
        seen: set[str] = set()
        for s in sections:
            if s.name in seen:
                raise SnippetError(f"{s.page}: a second {tour} section named {s.name!r}")
            seen.add(s.name)
        if not sections:
            raise SnippetError(f"no cell of {lessons} belongs to the {tour} tour")
        if len(_CACHE) > 8:
            _CACHE.clear()
        _CACHE[stamp] = tuple(sections)
    return _CACHE[stamp]


def find(tour: str, name: str) -> Section:
    """The section `name` of the tour (ConfigError naming the choices when there is none)."""
    sections = load(tour)
    check_section(name, tour)
    return next(s for s in sections if s.name == name)


def check_section(section: str | None, tour: str) -> None:
    """ConfigError unless section is None or one of the tour's names (a Config check: when
    the pages are missing, the run says so instead)."""
    if section is None:
        return
    try:
        names = [s.name for s in load(tour)]
    except LessonsMissing:
        return
    cli.check(section in names, "section",
              f"unknown section {section!r}; choose one of: {', '.join(names)} (see --list)")


# --- running a section ----------------------------------------------------------------------------


def preamble_code(section: Section, seed: int, out: str) -> str:
    """The page's preamble with the tour's seed and output folder filled in."""
    text = KEY_LITERAL.sub(f"jax.random.key({seed})", section.preamble)
    return OUT_LINE.sub(lambda m: f"out = {out!r}", text)


class _Console(code.InteractiveConsole):
    """The interactive interpreter's loop; an exception in a snippet stops the tour."""

    def showtraceback(self):
        raise SnippetError(f"a tour snippet raised {sys.exc_info()[1]!r}") from sys.exc_info()[1]

    def showsyntaxerror(self, filename=None, **kwargs):
        raise SnippetError(f"a tour snippet does not parse: {sys.exc_info()[1]!r}")


@dataclasses.dataclass
class Run:
    """A section as it ran: its values, and each input line with what it printed."""

    values: dict
    lines: list[tuple[str, list[str]]]   # (input line, the output lines it produced)


def _shown(args: tuple):
    return args[0] if len(args) == 1 else args


_SCRATCH: list[str] = []


def scratch() -> str:
    """A temporary folder for the files of sections run without an --out (one per process)."""
    if not _SCRATCH:
        _SCRATCH.append(tempfile.mkdtemp(prefix="jaxnets-tour-"))
    return _SCRATCH[0]


def run_section(section: Section, seed: int = 0, out: str | None = None) -> Run:
    """Run the section's cell line by line in a fresh console after the page's preamble (its
    files go to `out`, by default a temporary folder)."""
    out = out if out is not None else scratch()
    console = _Console()   # a fresh namespace: {'__name__': '__console__', '__doc__': None}
    shown: list = []       # what the snippet showed: print() arguments, the echoed value
    echoes: list[int] = []
    real_print = builtins.print

    def recording_print(*args, **kwargs):
        if kwargs.get("file") in (None, sys.stdout):
            shown.append(_shown(args))
        real_print(*args, **kwargs)

    # While it stands in for print, it is builtins.print to pickle too (a snippet may pickle
    # an object that names print; loading that gives the real one).
    recording_print.__module__, recording_print.__qualname__ = "builtins", "print"

    def displayhook(value):   # the REPL's echo of an expression statement, recorded
        if value is not None:
            shown.append(value)
            echoes.append(len(lines))
        sys.__displayhook__(value)

    def push(line: str) -> tuple[bool, list[str]]:
        buffer = io.StringIO()
        hook, sys.displayhook = sys.displayhook, displayhook
        builtins.print = recording_print
        try:
            with contextlib.redirect_stdout(buffer), contextlib.redirect_stderr(buffer):
                more = console.push(line)
        finally:
            sys.displayhook = hook
            builtins.print = real_print
        return more, buffer.getvalue().splitlines()

    lines: list[tuple[str, list[str]]] = []
    for line in preamble_code(section, seed, out).splitlines():
        more, printed = push(line)
        if printed:
            raise SnippetError(f"{section.page}: the preamble printed {printed!r}")
    if more:
        push("")
    shown.clear()
    source = section.code
    statements = ast.parse(source).body
    more = False
    for line in source.splitlines():
        more, printed = push(line)
        lines.append((line, printed))
    if more:   # the cell ends inside a block: the prompt needs the blank line a notebook doesn't
        more, printed = push("")
        lines.append(("", printed))
    last = statements[-1] if statements else None
    for at in echoes:   # (the 0-based index of the input line that was being pushed)
        if not (isinstance(last, ast.Expr) and at + 1 == last.end_lineno):
            raise SnippetError(
                f"{section.where} [{section.name}]: line {at + 1} shows a value, which a notebook "
                "shows only for a cell's last line: print() it, or assign it")
    if echoes and isinstance(shown[-1], (tuple, list, dict, set)) and (
            "\n" in repr(shown[-1]) or len(repr(shown[-1])) > 79):
        raise SnippetError(f"{section.where} [{section.name}]: the last line shows a long "
                           "container, which IPython lays out otherwise: print() it")
    # Read-only look-ups after the snippet ran: a name, an expression over names, or an index
    # into what the snippet showed.
    values = {}
    for k, v in section.values.items():
        try:
            values[k] = plain(shown[v] if isinstance(v, int) else eval(v, console.locals))
        except Exception as e:
            raise SnippetError(f"{section.where} [{section.name}]: value {k}: {v!r}: {e!r}") from e
    return Run(values, lines)


def plain(value):
    """value with dtypes, devices and other non-array objects as their str (JSON-ready)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(plain(v) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)) or hasattr(value, "tolist"):
        return value
    return str(value)


# --- printing -------------------------------------------------------------------------------------

NOTE = "## "


def _commented(text: str, prefix: str) -> list[str]:
    return [(prefix + line).rstrip() for line in text.splitlines()]


def preamble_text(section: Section, seed: int, out: str) -> str:
    """A page's preamble, as the tour prints it before that page's sections."""
    return "\n".join([f"## The preamble of {section.page}: every section below runs after it.",
                      *preamble_code(section, seed, out).splitlines()]) + "\n"


def section_text(section: Section, run: Run) -> str:
    """A section as the tour prints it: its PyTorch cell, then its lines and outputs."""
    parts = [f"## [{section.name}] PyTorch:", *_commented(section.torch, "##     "),
             "## JAX:"]
    for line, printed in run.lines:
        parts.append(line)
        parts += [("# " + p).rstrip() for p in printed]
    parts.append(f"## explained in {section.where}")
    return "\n".join(parts) + "\n"


def call(section: Section, seed: int = 0, out: str | None = None) -> tuple[dict, str]:
    """Run one section by itself (what tests do): (values, the text the tour prints for it,
    its page's preamble first)."""
    out = out if out is not None else scratch()
    run = run_section(section, seed, out)
    return run.values, preamble_text(section, seed, out) + "\n" + section_text(section, run)


def values(tour: str, name: str, seed: int = 0, out: str | None = None) -> dict:
    """The values of one section's cell, run as the tour runs it (the pages' hidden checks)."""
    return run_section(find(tour, name), seed, out).values


def intro(tour: str) -> str:
    return "\n".join([
        f"## The {tour} tour: the JAX cells of the lessons in docs/lessons, each run in a fresh",
        "## Python session after its page's preamble. Paste a preamble and then a section into",
        "## `python`: it prints what the `# ` lines under each statement show (`## ` lines are",
        "## the tour's notes: the PyTorch code each section mirrors, and where the page",
        "## explains it)."]) + "\n"


def run_tour(name: str, *, section: str | None, list_only: bool, seed: int, out: str,
             progress: bool = True) -> dict:
    """Print the chosen sections (or the list) and write metrics.json; returns {name: values}."""
    say = print if progress else (lambda *a, **k: None)
    sections = load(name)
    check_section(section, name)
    if list_only:
        width = max(len(s.name) for s in sections)
        for s in sections:
            say(f"  {s.name:<{width}}  {s.where}")
        return {}
    cli.check_writable_folder(out, "out")
    os.makedirs(out, exist_ok=True)
    say(intro(name))
    results = {}
    page = None
    for s in sections:
        if section not in (None, s.name):
            continue
        if s.page != page:
            say(preamble_text(s, seed, out))
            page = s.page
        run = run_section(s, seed, out)
        say(section_text(s, run))
        results[s.name] = run.values
    path = cli.write_json(os.path.join(out, "metrics.json"),
                          {"experiment": name, "seed": seed, "sections": results})
    say(f"## wrote {path}")
    return results
