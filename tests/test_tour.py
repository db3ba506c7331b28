"""The tours' transcripts are true: every section's printed code, pasted after the printed preamble
into a fresh Python console, prints exactly what the transcript shows under it.

The test does what a learner does. It runs `python -m experiments.tensors` / `autograd` as a
command, reads the preamble (the `>>> ` lines at the top) and each section's lines from the
printed text only, and replays them in another interpreter (a subprocess: no state is shared with
the tour), one fresh `code.InteractiveConsole` (the standard library's interactive interpreter) per
section. Two sections with blocks are also pasted into a real `python -i`, whose output must be
the transcript's.
"""

import json
import os
import re
import subprocess
import sys

import pytest

from experiments import tensors, tour
from experiments.tour import Section, SnippetError

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HEADING = re.compile(r"^=== \[(\S+)\] PyTorch: .* ===$")
PROMPTS = (">>> ", "... ")

# Run in a fresh interpreter: for each section, a new console gets the preamble, then the
# section's input lines; what it prints is recorded the way a terminal shows it.
REPLAY = r"""
import code, contextlib, io, json, sys

def session(preamble, lines):
    console = code.InteractiveConsole()
    shown, more = [], False
    for i, line in enumerate(list(preamble) + list(lines)):
        out = io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
            was_more, more = more, console.push(line)
        if i >= len(preamble):
            prompt = "..." if was_more else ">>>"
            shown.append(f"{prompt} {line}" if line else prompt)
        shown += out.getvalue().splitlines()
    return shown

jobs = json.load(sys.stdin)
json.dump({name: session(job["preamble"], job["lines"]) for name, job in jobs.items()},
          sys.stdout)
"""


def parse(transcript: str) -> tuple[list[str], dict[str, list[str]]]:
    """(preamble lines, {section: its printed block}) from a tour's printed text."""
    lines = transcript.splitlines()
    first = next(i for i, line in enumerate(lines) if HEADING.match(line))
    preamble = [line[4:] for line in lines[:first] if line.startswith(">>> ")]
    blocks: dict[str, list[str]] = {}
    name = None
    for line in lines[first:]:
        m = HEADING.match(line)
        if m:
            name = m.group(1)
            blocks[name] = []
        elif line.startswith(("note: ", "wrote ")):
            name = None
        elif name is not None:
            blocks[name].append(line)
    return preamble, {k: _strip_blank_tail(v) for k, v in blocks.items()}


def _strip_blank_tail(block: list[str]) -> list[str]:
    while block and not block[-1].strip():
        block = block[:-1]
    return block


def inputs(block: list[str]) -> list[str]:
    """The lines a learner types: those at a prompt, prompt removed."""
    return [line[4:] if line.startswith(PROMPTS) else "" for line in block
            if line.startswith(PROMPTS) or line in (">>>", "...")]


def replay(preamble: list[str], blocks: dict[str, list[str]], cwd: str) -> dict[str, list[str]]:
    jobs = {name: {"preamble": preamble, "lines": inputs(block)} for name, block in blocks.items()}
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-c", REPLAY], input=json.dumps(jobs), cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout)


def learner_run(name: str, out: str) -> str:
    done = subprocess.run([sys.executable, "-m", f"experiments.{name}", "--out", out], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tensors", "autograd"])
def test_every_section_reproduces_when_pasted_after_the_preamble(name, tmp_path):
    module = __import__(f"experiments.{name}", fromlist=["SECTIONS"])
    printed = learner_run(name, str(tmp_path / "tour"))
    preamble, blocks = parse(printed)
    assert preamble == ["import jax", "import jax.numpy as jnp", "import numpy as np",
                        "key = jax.random.key(0)"]
    assert list(blocks) == [s.name for s in module.SECTIONS]
    assert all(block and block[0].startswith(">>> ") for block in blocks.values())
    got = replay(preamble, blocks, cwd=str(tmp_path))
    for section, block in blocks.items():
        assert got[section] == block, f"[{section}] prints something else when pasted"


@pytest.mark.parametrize("name,section", [("autograd", "vjp"), ("tensors", "named")])
def test_a_real_python_prompt_prints_the_same(name, section, tmp_path):
    module = __import__(f"experiments.{name}", fromlist=["SECTIONS"])
    chosen = next(s for s in module.SECTIONS if s.name == section)
    printed = tour.preamble_text(0) + "\n" + tour.call(chosen, 0, str(tmp_path))[1]
    preamble, blocks = parse(printed)
    typed = "\n".join(preamble + inputs(blocks[section])) + "\n"
    env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    done = subprocess.run([sys.executable, "-q", "-i"], input=typed, cwd=str(tmp_path), env=env,
                          capture_output=True, text=True, timeout=300, check=False)
    assert "Error" not in done.stderr, done.stderr[-2000:]
    assert done.stdout.splitlines() == [line for line in blocks[section]
                                        if not line.startswith((">>>", "..."))]


def test_the_replay_catches_a_transcript_that_did_not_run(tmp_path):
    """A hidden definition, a wrong number, a key the preamble did not make: each one differs."""
    preamble = ["import jax", "import jax.numpy as jnp", "key = jax.random.key(0)"]
    blocks = {
        "hidden": [">>> y", "Array([5.5, 3. ], dtype=float32)"],
        "number": [">>> jnp.ones(2)", "Array([1., 2.], dtype=float32)"],
        "other_key": [">>> jax.random.normal(key, (1,))",
                      repr(jax_normal(1, (1,)))],
        "true": [">>> jnp.ones(2)", "Array([1., 1.], dtype=float32)"],
    }
    got = replay(preamble, blocks, cwd=str(tmp_path))
    assert "NameError: name 'y' is not defined" in got["hidden"][-1]
    assert got["number"] != blocks["number"]
    assert got["other_key"] != blocks["other_key"]
    assert got["true"] == blocks["true"]


def jax_normal(seed, shape):
    import jax

    return jax.random.normal(jax.random.key(seed), shape)


def test_parse_reads_blocks_with_blank_lines_and_stops_at_notes():
    text = """intro
>>> import jax

=== [a] PyTorch: t ===
>>> x
Array([[[1]],

       [[2]]], dtype=int32)

note: words
      more words

=== [b] PyTorch: u ===
>>> def f():
...     return 1
...
>>> f()
1

wrote m.json
"""
    preamble, blocks = parse(text)
    assert preamble == ["import jax"]
    assert blocks["a"] == [">>> x", "Array([[[1]],", "", "       [[2]]], dtype=int32)"]
    assert inputs(blocks["b"]) == ["def f():", "    return 1", "", "f()"]


def test_a_section_runs_in_a_fresh_namespace_and_a_failing_snippet_stops_the_tour():
    values, text = tour.call(Section("a", "t", "z = 41\nz + 1\n", {"z": "z", "answer": 0}))
    assert values == {"z": 41, "answer": 42} and ">>> z + 1\n42" in text
    with pytest.raises(SnippetError, match="NameError"):
        tour.call(Section("b", "t", "z\n"))   # z of section "a" is not there
    with pytest.raises(SnippetError, match="inside a block"):
        tour.call(Section("c", "t", "def f():\n    return 1\n"))


def test_the_preamble_key_is_the_seed_and_out_is_filled_in():
    _, text = tour.call(Section("k", "t", "key\n"), seed=3)
    assert "key<fry>" in text and "[0 3]" in text
    assert tour.preamble(3)[-1] == "key = jax.random.key(3)"
    assert all("$out" not in tour.section_code(s, "o") for s in tensors.SECTIONS)
    save_model = next(s for s in tensors.SECTIONS if s.name == "save_model")
    assert "os.path.join('o', 'model.safetensors')" in tour.section_code(save_model, "o")
