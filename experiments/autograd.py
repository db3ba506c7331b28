"""Seeds 002, 003 and 004: the PyTorch autograd tour, snippet by snippet, in JAX; then Newton.

    python -m experiments.autograd                  # every section
    python -m experiments.autograd --list           # the sections and the snippets they mirror
    python -m experiments.autograd --section vjp    # one section

PyTorch records operations on tensors marked `requires_grad` and `.backward()` walks that record;
JAX differentiates functions: `jax.grad(f)(x)` is `f`'s gradient at `x`. So `requires_grad`
becomes the choice of arguments (`argnums`, or which pytree you pass), `grad_fn` the traced
program (`jax.make_jaxpr`), `y.backward(v)` a vector-Jacobian product (`jax.vjp`), and `no_grad`
is not differentiating (or `jax.lax.stop_gradient` inside a differentiated function, whose
gradient the `no_grad` section prints).

Each section is a JAX snippet printed line by line at a Python prompt with the output it produced
under each line: the code shown is the code that ran (`experiments.tour`). Every section runs in
a fresh session that has run only the lines printed at the top of the tour, so pasting those and
a section's lines into `python` gives the same output. The comment beside a line is the PyTorch
line it mirrors.

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
    list: bool = cli.arg(False, "list the sections and the snippets they mirror, and exit")
    seed: int = cli.seed()
    options: RunOptions = RunOptions(out="runs/autograd")

    def __post_init__(self):
        # SECTIONS is defined below the imports that answer_early runs before, so an unknown
        # --section is reported when main builds the Config again, after them.
        if "SECTIONS" in globals():
            check_section(self.section, SECTIONS)


if __name__ == "__main__":
    cli.answer_early(Config, __doc__)  # --help and flag errors answer before jax is imported

import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.tour import Section, check_section, run_tour

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


# --- the sections --------------------------------------------------------------------------------
# Each section's `code` is what the transcript shows and what runs (experiments.tour).

SECTIONS: tuple[Section, ...] = (
    Section("requires_grad", "x = torch.ones(2, 2, requires_grad=True); y = x + 2; "
            "z = y * y * 3; out = z.mean()", """
        x = jnp.ones((2, 2))             # x = torch.ones(2, 2, requires_grad=True)
        x
        y = x + 2                        # y = x + 2
        y
        z = y * y * 3                    # z = y * y * 3
        out = z.mean()                   # out = z.mean()
        z, out                           # print(z, out)
        """, {"x": "x", "y": "y", "z": "z", "out": "out"},
        "there is no requires_grad flag: arrays carry no history. What gets differentiated is "
        "decided later, by which function and which arguments are handed to jax.grad (sections "
        "backward, requires_grad_)."),
    Section("backward", "out.backward(); print(x.grad)", """
        def f(x):                        # out, as a function of x
            y = x + 2
            z = y * y * 3
            return z.mean()

        x = jnp.ones((2, 2))             # x = torch.ones(2, 2, requires_grad=True)
        jax.grad(f)(x)                   # out.backward(); print(x.grad)
        1.5 * (x + 2)                    # by hand: d out/d x_i = 3/2 (x_i + 2)
        """, {"grad": 0, "hand": 1},
        "seed 002 derives d out/d x_i = 3/2 (x_i + 2) = 9/2 = 4.5 at x_i = 1: 4.5 everywhere "
        "here too. jax.grad returns the gradient instead of adding it into x.grad, so nothing "
        "accumulates between calls and there is no zero_grad()."),
    Section("requires_grad_", "a.requires_grad_(True); b = (a * a).sum(); b.grad_fn", """
        a = jax.random.normal(key, (2, 2))       # a = torch.randn(2, 2)
        a = (a * 3) / (a - 1)                    # a = ((a * 3) / (a - 1))
        a
        def b_of(a):                             # b = (a * a).sum(), as a function of a
            return (a * a).sum()

        b_of(a)
        jax.grad(b_of)(a)                # a.requires_grad_(True); b.backward(); a.grad
        2 * a                            # by hand: d b/d a = 2a
        def line(params, x, scale):      # y = w*x + b, summed, times a constant
            return scale * (params['w'] * x + params['b']).sum()

        params = {'w': jnp.array([2.0]), 'b': jnp.array([3.0])}
        x = jnp.array([1.0])
        jax.grad(line)(params, x, 1.0)                   # argnums=0: every leaf of params
        jax.grad(line, argnums=1)(params, x, 1.0)        # x only
        jax.grad(line, argnums=(0, 1))(params, x, 1.0)   # params and x
        """, {"a": "a", "b": 1, "grad_a": 2, "two_a": 3, "grad_params": 4, "grad_x": 5,
              "grad_all": 6},
        "seed 002 prints a.requires_grad (False, then True after requires_grad_(True)). In JAX "
        "you choose the arguments instead: jax.grad(b_of) differentiates b with respect to a "
        "(the value torch puts in a.grad once the flag is True: 2a); argnums picks positional "
        "arguments, and an argument may be a whole pytree (dict, list, Flax params), whose "
        "gradient comes back with the same structure. What is not chosen (scale here) is a "
        "constant, like a tensor whose requires_grad is False."),
    Section("grad_fn", "print(y.grad_fn); x.grad_fn", """
        def f(x):                        # out, as a function of x
            y = x + 2
            z = y * y * 3
            return z.mean()

        jaxpr = jax.make_jaxpr(f)(jnp.ones((2, 2)))   # y.grad_fn, z.grad_fn, out.grad_fn, ...
        jaxpr
        [e.primitive.name for e in jaxpr.jaxpr.eqns]  # the recorded operations, in order
        """, {"jaxpr": "jaxpr", "primitives": 1},
        "grad_fn is the node PyTorch recorded while running (seed 002 prints y.grad_fn); JAX "
        "records nothing while running, it traces the function into a jaxpr (the program above: "
        "add, mul, reduce_sum, div) and differentiates that. A leaf such as x has grad_fn None; "
        "here x is simply an input of the program."),
    Section("vjp", "while y.data.norm() < 1000: y = y * 2; y.backward(v); x.grad", """
        def doubled(x):                  # y = x * 2; while y.data.norm() < 1000: y = y * 2
            y = x * 2
            while jnp.linalg.norm(y) < 1000:
                y = y * 2
            return y

        x = jax.random.normal(key, (3,))         # x = torch.randn(3, requires_grad=True)
        y, pullback = jax.vjp(doubled, x)
        y                                        # print(y)
        v = jnp.array([0.1, 1.0, 0.0001])        # v = torch.tensor([0.1, 1.0, 0.0001])
        (x_grad,) = pullback(v)                  # y.backward(v)
        x_grad                                   # print(x.grad)
        jax.jacrev(doubled)(x)           # the full Jacobian J (reverse mode)
        jax.jacfwd(doubled)(x)           # the same J (forward mode)
        jax.jacrev(doubled)(x).T @ v     # J^T v, what backward(v) computed without forming J
        y[0] / x[0]                      # J = 2^k I for the k doublings
        """, {"x": "x", "y": "y", "v": "v", "x_grad": "x_grad", "jacobian_rev": 2,
              "jacobian_fwd": 3, "jt_v": 4, "scale": 5},
        "backward(v) on a non-scalar y computes the vector-Jacobian product J^T v without "
        "forming J; jax.vjp returns y and that product as a function (the pullback), to call "
        "with any v. Python control flow on values is fine under grad/vjp (they see concrete "
        "values); under jit it would need lax.while_loop, which reverse mode cannot "
        "differentiate."),
    Section("no_grad", "print((x ** 2).requires_grad); with torch.no_grad(): "
            "print((x ** 2).requires_grad)", """
        x = jax.random.normal(key, (3,))         # x = torch.randn(3, requires_grad=True)
        x ** 2                           # with torch.no_grad(): x ** 2 (the same values)
        jax.grad(lambda x: (x ** 2).sum())(x)    # (x ** 2).requires_grad True: its gradient, 2x
        2 * x
        jax.grad(lambda x: jax.lax.stop_gradient(x ** 2).sum())(x)   # no_grad: False, none flows
        jax.grad(lambda x: (x ** 2 + jax.lax.stop_gradient(x ** 2)).sum())(x)   # 2x + 0
        jax.grad(lambda x: (jax.lax.stop_gradient(x ** 2) * x).sum())(x)   # (x ** 2).detach() * x
        lr, w = 1e-3, jnp.ones(3)
        w = w - lr * jax.grad(lambda w: (w * x).sum())(w)   # with torch.no_grad(): w -= lr * w.grad
        w
        """, {"x": "x", "squared": 0, "grad_tracked": 1, "two_x": 2, "grad_stopped": 3,
              "grad_stop": 4, "grad_detach_times_x": 5, "w_new": "w"},
        "seed 002 prints x.requires_grad and (x ** 2).requires_grad (True, True) and, inside "
        "torch.no_grad(), (x ** 2).requires_grad (False). The values behind those flags: a "
        "result that requires grad passes a gradient back (2x for x ** 2); one computed under "
        "no_grad is a constant, and jax.lax.stop_gradient makes it one inside a differentiated "
        "function: zero gradient through it (the zeros), while its value still counts where it "
        "multiplies x (x ** 2, the last gradient). Code outside jax.grad (the update of w, "
        "evaluation) records nothing and needs no context manager."),
    Section("variable", "x, w, b = Variable(...); y = w * x + b; y.backward()", """
        x, w, b = jnp.array([1.0]), jnp.array([2.0]), jnp.array([3.0])   # Variable(...) each
        w * x + b                        # y = w * x + b
        def y_of(x, w, b):               # y has one element; .sum() gives jax.grad its scalar
            return (w * x + b).sum()

        x_grad, w_grad, b_grad = jax.grad(y_of, argnums=(0, 1, 2))(x, w, b)   # y.backward()
        x_grad, w_grad, b_grad           # print(x.grad); print(w.grad); print(b.grad)
        """, {"y": 0, "x_grad": "x_grad", "w_grad": "w_grad", "b_grad": "b_grad"},
        "Variable has been a plain Tensor since PyTorch 0.4; in JAX every array is "
        "differentiable. y.backward() on a one-element y is allowed in torch; jax.grad needs a "
        "scalar, hence .sum(). (Seed 002 prints these gradients but shows no output; by hand: "
        "x.grad = w = 2, w.grad = x = 1, b.grad = 1.)"),
    Section("backward_v", "y = w * x; y.backward(v); w.grad", """
        x = jnp.array([4.0, 5.0, 6.0])   # x = torch.tensor([4.0, 5.0, 6.0], requires_grad=True)
        w = jax.random.normal(key, (3,))         # w: a random tensor
        v = jnp.array([0.1, 1.0, 0.0001])        # seed 002's v
        y, pullback = jax.vjp(lambda w, x: w * x, w, x)   # y = w * x
        y
        w_grad, x_grad = pullback(v)     # y.backward(v)
        w_grad                           # w.grad
        v * x                            # the numpy check: d(w*x)/dw = x, so w.grad = v * x
        x_grad                           # x.grad = v * w
        """, {"x": "x", "w": "w", "v": "v", "y": "y", "w_grad": "w_grad", "x_grad": "x_grad",
              "v_times_x": 2},
        "y is a vector, so backward needs v and gives v * x for w (seed 004 writes the numpy "
        "check as v * w, which is x's gradient); vjp returns the gradients of all the "
        "function's inputs at once."),
    Section("params_grad", "params = torch.tensor([1.0, 0.0], requires_grad=True); "
            "loss.backward(); params.grad", """
        t_c = jnp.array([0.5, 14.0, 15.0, 28.0, 11.0, 8.0, 3.0, -4.0, 6.0, 13.0, 21.0])
        t_u = jnp.array([35.7, 55.9, 58.2, 81.9, 56.3, 48.9, 33.9, 21.8, 48.4, 60.4, 68.4])
        def model(t_u, w, b):
            return w * t_u + b

        def loss_fn(t_p, t_c):
            squared_diffs = (t_p - t_c) ** 2
            return squared_diffs.mean()

        params = jnp.array([1.0, 0.0])   # params = torch.tensor([1.0, 0.0], requires_grad=True)
        loss_fn(model(t_u, *params), t_c)        # loss = loss_fn(model(t_u, *params), t_c)
        jax.grad(lambda params: loss_fn(model(t_u, *params), t_c))(params)   # .backward(); .grad
        """, {"loss": 0, "grad": 1},
        "seed 003 prints the loss as Out[6] tensor(1763.8846) and params.grad as Out[7] "
        "tensor([4517.2969, 82.6000]): the same values to the four decimals torch prints."),
    Section("newton", "second-order optimisation: w = w - eta * H^-1 dL/dw", """
        import optax
        from jaxnets import optim, thermometer
        from experiments.autograd import minimise, steps_to   # iterates of tx; first one near
        t_c, t_u = thermometer.data()
        def loss(p):                     # the thermometer's mean squared error, p = [w, b]
            return thermometer.params_loss(p, t_u, t_c)

        p0 = jnp.array([1.0, 0.0])
        newton_path = minimise(loss, p0, optim.newton(loss), 2)   # w = w - H^-1 dL/dw
        newton_path[1], loss(newton_path[1])     # one Newton step: [w, b] and the loss
        newton_path[2]                           # a second step stays put
        a = np.stack([np.asarray(t_u, np.float64), np.ones(11)], 1)
        exact = np.linalg.lstsq(a, np.asarray(t_c, np.float64), rcond=None)[0]
        exact.round(4)                           # least squares in float64
        gd_path = minimise(loss, p0, optax.sgd(1e-4), 100)
        gd_path[-1], loss(gd_path[-1])           # gradient descent, lr 1e-4, after 100 steps
        def log_f(x):                    # seed 000's f: minimum at x = -0.75, saddle at 0
            return jnp.log(x ** 4 + x ** 3 + 2)

        runs = {}
        for x0 in (-1.0, -1.5):
            newton_xs = minimise(log_f, jnp.float32(x0), optim.newton(log_f), 20)
            gd_xs = minimise(log_f, jnp.float32(x0), optax.sgd(0.1), 200)
            runs[x0] = {'newton_steps': steps_to(newton_xs, -0.75),
                        'newton_end': round(float(newton_xs[-1]), 5),
                        'gd_steps': steps_to(gd_xs, -0.75), 'gd_end': round(float(gd_xs[-1]), 5)}

        runs                             # None: never reaches -0.75
        """, {"newton_params": "newton_path[1]", "newton_loss": "loss(newton_path[1])",
              "newton_params_step2": "newton_path[2]", "least_squares": "exact",
              "gd_params_100": "gd_path[-1]", "gd_loss_100": "loss(gd_path[-1])", "log_f": "runs"},
        "the loss is quadratic in (w, b), so its second-order model is exact and one step "
        "solves it; a second step stays put. Gradient descent needs a small lr for the steep w "
        "direction and crawls along the flat b direction (ill-conditioning is what normalising "
        "t_u fixes). On log_f Newton converges quadratically near the minimum (f'' > 0) but "
        "seeks any stationary point: from -1.5 its first step overshoots into the region where "
        "it heads for the flat saddle at x = 0, which gradient descent, always going downhill, "
        "avoids. Second order methods need a convex problem or safeguards (line search, "
        "damping)."),
)


def run(config: Config) -> dict:
    """Run the chosen sections; returns {section name: values} (also in metrics.json)."""
    return run_tour("autograd", SECTIONS, section=config.section, list_only=config.list,
                    seed=config.seed, out=config.options.out, progress=not config.options.quiet)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
