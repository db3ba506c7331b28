"""Sphinx configuration of the jaxnets lessons: the stack of the JAX and Flax docs.

Build from the repository root (every notebook cell is executed; a failing cell, a failed check
or any Sphinx warning fails the build):

    python -m sphinx -W -b html docs docs/_build/html
"""

import os
import sys

DOCS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(DOCS)
sys.path.insert(0, os.path.join(DOCS, "_ext"))
# The notebooks' kernels import this checkout's jaxnets and experiments (also from a git
# worktree or a clone that was never `pip install`ed): kernels inherit the environment.
os.environ["PYTHONPATH"] = os.pathsep.join(
    p for p in (ROOT, os.environ.get("PYTHONPATH")) if p)
# No progress bars in executed outputs (tqdm switches off without a terminal; this says so).
os.environ.setdefault("TQDM_DISABLE", "1")

project = "jaxnets lessons"
author = "the jaxnets authors"
copyright = "2026, the jaxnets authors (MIT); the tutorials' code: see NOTICE"

# sphinx-mathjax-offline: MathJax served from the site itself (the default loads it from a CDN,
# so formulas stay raw text offline and the browser logs the failed requests).
extensions = ["myst_nb", "sphinx_design", "sphinx-mathjax-offline", "jaxnets_lessons"]
exclude_patterns = ["_build", "WRITING.md", "reproduction/**", "**/.ipynb_checkpoints"]
# JAXNETS_DOCS_ONLY=01_mnist,02_tensors builds only those lessons (and the index): a quick loop
# while writing a page. The full site is built without it.
if os.environ.get("JAXNETS_DOCS_ONLY"):
    _only = {name.strip().removesuffix(".md") for name in os.environ["JAXNETS_DOCS_ONLY"].split(",")}
    exclude_patterns += ["seeds.md"] + [
        f"lessons/{f}" for f in os.listdir(os.path.join(DOCS, "lessons"))
        if f.endswith(".md") and f.removesuffix(".md") not in _only]
    suppress_warnings = ["myst.xref_missing", "toc.excluded", "toc.not_readable"]  # (left out)
myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3          # [text](page.md#heading) links resolve, or -W fails the build

# Execution, as the JAX docs do it: every cell runs on every build, errors are fatal.
nb_execution_mode = "force"
nb_execution_raise_on_error = True
nb_execution_show_tb = True       # a failed check shows its traceback in the build log
nb_execution_timeout = 600        # per cell; the whole site builds in under 5 minutes here
nb_merge_streams = True
nb_output_stderr = "warn"         # anything a cell prints to stderr (a warning) fails the build

html_theme = "sphinx_book_theme"
html_title = "jaxnets: PyTorch tutorials, side by side in JAX"
html_static_path = ["_static"]
html_favicon = "_static/favicon.svg"
# The theme's colour mode on a first visit (without one it logs a console error there).
html_context = {"default_mode": "light"}
html_theme_options = {
    "use_download_button": True,
    "show_toc_level": 2,
}
