"""Seeds 001, 002, 003: the PyTorch tensor tour, snippet by snippet, in JAX.

    python -m experiments.tensors                   # every section
    python -m experiments.tensors --list            # the sections and the page sections they are
    python -m experiments.tensors --section add     # one section

The sections are the JAX cells of the lessons docs/lessons/02_tensors.md and 10_save_load.md,
one source for both (`experiments.tour`): each runs in a fresh Python session after its page's
preamble (the imports and `key = jax.random.key(--seed)`), and the tour prints it so that
pasting the preamble and the section, as printed, into `python` prints the same: code lines as
they are, every output as a `# ` comment under the statement that printed it, the PyTorch cell
it mirrors and the page section that explains it as `## ` comments. Run it from a checkout of
jaxnets (the pages are read from its docs/ folder). Where JAX has no direct equivalent (in-place
ops, `out=`, memory shared with numpy, named tensors, whole-model pickles) the section shows the
idiomatic JAX way and its page says why it differs. JAX has 64-bit types off by default, so
torch's int64 (`dtype=torch.long`, integer lists) is int32 here and float64 numpy arrays become
float32 (`jax_dtype_for`).

The seeds print one figure of their own here: seed 003's Out[7], the named weights (`TUTORIAL`).
Writes metrics.json (each section's values) and the files saved by the `save` and `save_model`
sections into --out.
"""

from __future__ import annotations

import dataclasses
import sys

from experiments import cli
from jaxnets.options import RunOptions


@dataclasses.dataclass(frozen=True)
class Config:
    section: str | None = cli.arg(None, "run one section only (names: --list)", metavar="NAME")
    list: bool = cli.arg(False, "list the sections and where the lessons explain them, and exit")
    seed: int = cli.seed()
    options: RunOptions = RunOptions(out="runs/tensors")

    def __post_init__(self):
        # The sections are the lesson pages' cells, read by experiments.tour, which is imported
        # below the line where answer_early answers: an unknown --section is reported when main
        # builds the Config again, after the imports.
        if "tour" in globals():
            tour.check_section(self.section, "tensors")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax

from experiments import tour

# --- dtypes --------------------------------------------------------------------------------------

# JAX's defaults with 64-bit types off (jax_enable_x64 unset): what torch's 64-bit dtypes become.
X32_DTYPES = {"int64": "int32", "float64": "float32", "complex128": "complex64"}


def jax_dtype_for(torch_dtype: str) -> str:
    """The JAX dtype a torch dtype name ('int64', 'float32', ...) maps to under JAX's defaults."""
    name = torch_dtype.removeprefix("torch.")
    return name if jax.config.jax_enable_x64 else X32_DTYPES.get(name, name)


# --- the seeds' data ------------------------------------------------------------------------------

POINTS = [[4.0, 1.0], [5.0, 3.0], [2.0, 1.0]]  # seed 003's `points`
CHANNEL_WEIGHTS = [0.2126, 0.7152, 0.0722]     # seed 003's weights_named (luminance weights)

# Figures the seeds themselves print, with where they print them (the page's checks compare).
TUTORIAL: dict[str, str] = {
    "weights_named (seed 003, In[7]/Out[7])":
        "tensor([0.2126, 0.7152, 0.0722], names=('channels',))",
}


# --- the experiment ------------------------------------------------------------------------------


def run(config: Config) -> dict:
    """Run the chosen sections; returns {section name: values} (also in metrics.json)."""
    return tour.run_tour("tensors", section=config.section, list_only=config.list,
                         seed=config.seed, out=config.options.out,
                         progress=not config.options.quiet)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
