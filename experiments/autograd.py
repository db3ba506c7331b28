"""Seeds 002, 003 and 004: the PyTorch autograd tour, snippet by snippet, in JAX; then Newton.

    python -m experiments.autograd                  # every section
    python -m experiments.autograd --list           # the sections and the page sections they are
    python -m experiments.autograd --section vjp    # one section

PyTorch records operations on tensors marked `requires_grad` and `.backward()` walks that record;
JAX differentiates functions: `jax.grad(f)(x)` is `f`'s gradient at `x`. So `requires_grad`
becomes the choice of arguments (`argnums`, or which pytree you pass), `grad_fn` the traced
program (`jax.make_jaxpr`), `y.backward(v)` a vector-Jacobian product (`jax.vjp`), and `no_grad`
is not differentiating (or `jax.lax.stop_gradient` inside a differentiated function, whose
gradient the `no_grad` section prints).

The sections are the JAX cells of the lessons docs/lessons/03_autograd.md and 09_optim.md, one
source for both (`experiments.tour`): each runs in a fresh Python session after its page's
preamble (the imports and `key = jax.random.key(--seed)`), and the tour prints it so that
pasting the preamble and the section, as printed, into `python` prints the same: code lines as
they are, every output as a `# ` comment under the statement that printed it, the PyTorch cell
it mirrors and the page section that explains it as `## ` comments. Run it from a checkout of
jaxnets (the pages are read from its docs/ folder).

The seeds' own figures (`TUTORIAL`): seed 002 derives d out/d x_i = 9/2 = 4.5 for
`out = mean(3 (x + 2)^2)` at x = 1; seed 003 prints the thermometer loss at w = 1, b = 0
(Out[6] tensor(1763.8846)) and its gradient (Out[7] tensor([4517.2969, 82.6000])).
The last section does what seed 002 only describes, second-order optimisation
`w = w - eta H^-1 dL/dw`: `jaxnets.optim.newton` against gradient descent, on the thermometer's
least-squares fit (one Newton step lands on the minimum) and on seed 000's
f(x) = log(x^4 + x^3 + 2). Writes metrics.json (each section's values) into --out.
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
    options: RunOptions = RunOptions(out="runs/autograd")

    def __post_init__(self):
        # The sections are the lesson pages' cells, read by experiments.tour, which is imported
        # below the line where answer_early answers: an unknown --section is reported when main
        # builds the Config again, after the imports.
        if "tour" in globals():
            tour.check_section(self.section, "autograd")


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments import tour

V = [0.1, 1.0, 0.0001]  # seed 002's `v` for y.backward(v)

# Figures the seeds themselves print or state, with where (the tour's notes compare).
TUTORIAL: dict[str, str] = {
    "x.grad after out.backward() (seed 002, its derivation: 9/2 = 4.5)": "4.5",
    "loss at w = 1, b = 0 (seed 003, Out[6])": "tensor(1763.8846)",
    "params.grad at w = 1, b = 0 (seed 003, Out[7])": "tensor([4517.2969, 82.6000])",
}


# --- second-order optimisation (used by the newton section's snippet) ----------------------------


def minimise(loss, x0: jax.Array, tx: optax.GradientTransformation, steps: int) -> jax.Array:
    """Iterates [steps + 1, ...] of `x <- x + tx.update(grad loss(x))`, starting at x0 (one scan)."""

    @jax.jit
    def go(x0):
        def step(carry, _):
            x, opt_state = carry
            updates, opt_state = tx.update(jax.grad(loss)(x), opt_state, x)
            x = optax.apply_updates(x, updates)
            return (x, opt_state), x

        _, xs = jax.lax.scan(step, (x0, tx.init(x0)), None, length=steps)
        return jnp.concatenate([x0[None], xs])

    return go(x0)


def steps_to(xs: np.ndarray, target: float, tol: float = 1e-4) -> int | None:
    """First iteration within tol of target (and staying there), None if never."""
    close = np.abs(np.asarray(xs, np.float64) - target) < tol
    for i in range(len(close)):
        if close[i:].all():
            return i
    return None


def run(config: Config) -> dict:
    """Run the chosen sections; returns {section name: values} (also in metrics.json)."""
    return tour.run_tour("autograd", section=config.section, list_only=config.list,
                         seed=config.seed, out=config.options.out,
                         progress=not config.options.quiet)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
