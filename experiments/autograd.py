"""Seeds 002 and 004: the PyTorch autograd tour, snippet by snippet, in JAX; then Newton's method.

    python -m experiments.autograd                  # every section
    python -m experiments.autograd --list           # the sections and the snippets they mirror
    python -m experiments.autograd --section vjp    # one section

PyTorch records operations on tensors marked `requires_grad` and `.backward()` walks that record;
JAX differentiates functions: `jax.grad(f)(x)` is `f`'s gradient at `x`. So `requires_grad`
becomes the choice of arguments (`argnums`, or which pytree you pass), `grad_fn` the traced
program (`jax.make_jaxpr`), `y.backward(v)` a vector-Jacobian product (`jax.vjp`), and `no_grad`
is not differentiating (or `jax.lax.stop_gradient` inside a differentiated function).

The tutorial's figures: `out = mean(3 (x + 2)^2)` at x = 1 has gradient 4.5 everywhere (seed
002's hand derivation); `y = w*x + b` at x=1, w=2, b=3 gives x.grad 2, w.grad 1, b.grad 1.
The last section does what seed 002 only describes, second-order optimisation
`w = w - eta H^-1 dL/dw`: `jaxnets.optim.newton` against gradient descent, on the thermometer's
least-squares fit (one Newton step lands on the minimum) and on seed 000's
f(x) = log(x^4 + x^3 + 2). Writes metrics.json (each section's values) into --out.
"""

from __future__ import annotations

import dataclasses
import sys

from experiments import cli


@dataclasses.dataclass(frozen=True)
class Config:
    section: str | None = cli.arg(None, "run one section only (names: --list)", metavar="NAME")
    list: bool = cli.arg(False, "list the sections and the snippets they mirror, and exit")
    seed: int = cli.seed()
    out: str = cli.out("autograd")
    progress: bool = cli.progress()
    quiet: bool = cli.quiet()

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

from experiments.tour import (
    Context,
    Section,
    check_section,
    note,
    run_tour,
    show,
    text,
)
from jaxnets import optim
from jaxnets import thermometer as thermo

V = [0.1, 1.0, 0.0001]  # seed 002's `v` for y.backward(v)


def blitz_out(x: jax.Array) -> jax.Array:
    """Seed 002: y = x + 2; z = y * y * 3; out = z.mean()."""
    y = x + 2
    z = y * y * 3
    return z.mean()


def sec_requires_grad(ctx: Context) -> tuple[dict, str]:
    x = jnp.ones((2, 2))
    y = x + 2
    z = y * y * 3
    out = z.mean()
    return {"x": x, "y": y, "z": z, "out": out}, text(
        show("x = jnp.ones((2, 2))            # torch.ones(2, 2, requires_grad=True)", x),
        show("y = x + 2", y),
        show("z = y * y * 3; out = z.mean(); z, out", (z, out)),
        note("there is no requires_grad flag: arrays carry no history. What gets "
             "differentiated is decided later, by which function and which arguments are handed "
             "to jax.grad (sections backward, requires_grad_)."))


def sec_backward(ctx: Context) -> tuple[dict, str]:
    x = jnp.ones((2, 2))
    grad = jax.grad(blitz_out)(x)
    hand = 1.5 * (x + 2)  # d out/d x_i = (1/4) * 6 (x_i + 2) = 3/2 (x_i + 2)
    return {"grad": grad, "hand": hand}, text(
        show("def f(x): y = x + 2; z = y * y * 3; return z.mean()\n"
             ">>> jax.grad(f)(x)                # out.backward(); x.grad", grad),
        show("1.5 * (x + 2)   # by hand: out = 1/4 sum 3 (x_i+2)^2, d out/d x_i = 3/2 (x_i+2)",
             hand),
        note("4.5 everywhere, as the seed derives. jax.grad returns the gradient instead of "
             "adding it into x.grad, so nothing accumulates between calls and there is no "
             "zero_grad()."))


def sec_requires_grad_(ctx: Context) -> tuple[dict, str]:
    a = jax.random.normal(ctx.key, (2, 2))
    a = (a * 3) / (a - 1)

    def b_of(a):
        return (a * a).sum()

    b = b_of(a)
    grad_a = jax.grad(b_of)(a)

    def line(params, x, scale):  # y = w*x + b, summed, times a constant
        return scale * (params["w"] * x + params["b"]).sum()

    params = {"w": jnp.array([2.0]), "b": jnp.array([3.0])}
    x = jnp.array([1.0])
    grad_params = jax.grad(line)(params, x, 1.0)                  # argnums=0: the params pytree
    grad_x = jax.grad(line, argnums=1)(params, x, 1.0)            # only x
    grad_all = jax.grad(line, argnums=(0, 1))(params, x, 1.0)     # both
    values = {"a": a, "b": b, "grad_a": grad_a, "grad_params": grad_params, "grad_x": grad_x,
              "grad_all": grad_all}
    return values, text(
        show("a = jax.random.normal(key, (2, 2)); a = (a * 3) / (a - 1); a", a),
        show("jax.grad(lambda a: (a * a).sum())(a)   # a.requires_grad_(True); b.backward()",
             grad_a),
        show("def line(params, x, scale): return scale * (params['w'] * x + params['b']).sum()"
             "\n>>> jax.grad(line)(params, x, 1.0)      # every leaf of the params pytree",
             grad_params),
        show("jax.grad(line, argnums=1)(params, x, 1.0)   # x only", grad_x),
        show("jax.grad(line, argnums=(0, 1))(params, x, 1.0)", grad_all),
        note("requires_grad_(True) marks a tensor; in JAX you choose the arguments: argnums "
             "picks positional arguments, and an argument may be a whole pytree (dict, list, "
             "Flax params), whose gradient comes back with the same structure. What is not "
             "chosen (scale here) is a constant."))


def sec_grad_fn(ctx: Context) -> tuple[dict, str]:
    x = jnp.ones((2, 2))
    jaxpr = jax.make_jaxpr(blitz_out)(x)
    primitives = [str(e.primitive) for e in jaxpr.jaxpr.eqns]
    return {"jaxpr": str(jaxpr), "primitives": primitives}, text(
        show("jax.make_jaxpr(f)(x)             # y.grad_fn, out.grad_fn, ...", jaxpr),
        note("grad_fn is the node PyTorch recorded while running; JAX records nothing while "
             "running, it traces the function into a jaxpr (the program above: add, mul, "
             "reduce_sum, div) and differentiates that. A leaf such as x has grad_fn None; "
             "here x is simply an input of the program."))


def doubled(x: jax.Array) -> jax.Array:
    """Seed 002: y = x * 2, doubled again while its norm is below 1000."""
    y = x * 2
    # Python control flow on values is fine under grad/vjp (they see concrete values); under jit
    # it would need lax.while_loop, which reverse-mode cannot differentiate.
    while jnp.linalg.norm(y) < 1000:
        y = y * 2
    return y


def sec_vjp(ctx: Context) -> tuple[dict, str]:
    x = jax.random.normal(ctx.key, (3,))
    v = jnp.array(V)
    y, pullback = jax.vjp(doubled, x)
    (x_grad,) = pullback(v)
    jac_rev = jax.jacrev(doubled)(x)
    jac_fwd = jax.jacfwd(doubled)(x)
    jtv = jac_rev.T @ v
    values = {"x": x, "y": y, "v": v, "x_grad": x_grad, "jacobian_rev": jac_rev,
              "jacobian_fwd": jac_fwd, "jt_v": jtv, "scale": y[0] / x[0]}
    return values, text(
        show("x = jax.random.normal(key, (3,)); y = doubled(x)   # the while-norm<1000 loop", y),
        show("y, pullback = jax.vjp(doubled, x); pullback(jnp.array([0.1, 1.0, 0.0001]))"
             "   # y.backward(v); x.grad", x_grad),
        show("jax.jacrev(doubled)(x)           # the full Jacobian J (reverse mode)", jac_rev),
        show("jax.jacfwd(doubled)(x)           # the same J (forward mode)", jac_fwd),
        show("jax.jacrev(doubled)(x).T @ v     # J^T v, equal to the pullback", jtv),
        note("backward(v) on a non-scalar y computes the vector-Jacobian product J^T v without "
             "forming J; jax.vjp returns y and that product as a function (the pullback), to "
             "call with any v. J here is 2^k I for the k doublings."))


def sec_no_grad(ctx: Context) -> tuple[dict, str]:
    x = jax.random.normal(ctx.key, (3,))
    squared = x ** 2   # outside jax.grad this is a plain computation: nothing is recorded

    def with_stop(x):
        return (x ** 2 + jax.lax.stop_gradient(x ** 2)).sum()

    grad = jax.grad(with_stop)(x)
    lr, w = 1e-3, jnp.ones(3)
    w_new = w - lr * jax.grad(lambda w: (w * x).sum())(w)   # seed 000's update under no_grad
    values = {"x": x, "squared": squared, "grad_stop": grad, "two_x": 2 * x, "w_new": w_new}
    return values, text(
        show("x ** 2                            # with torch.no_grad(): x ** 2", squared),
        show("jax.grad(lambda x: (x**2 + jax.lax.stop_gradient(x**2)).sum())(x)  # = 2x",
             grad),
        show("w = w - lr * jax.grad(loss)(w)    # with torch.no_grad(): w -= lr * w.grad", w_new),
        note("no_grad stops the recording; JAX records nothing unless it is differentiating, so "
             "code outside jax.grad (the optimizer update above, evaluation) needs no context "
             "manager. Inside a differentiated function, jax.lax.stop_gradient(v) treats v as "
             "a constant, like v.detach()."))


def sec_variable(ctx: Context) -> tuple[dict, str]:
    x, w, b = jnp.array([1.0]), jnp.array([2.0]), jnp.array([3.0])

    def y_of(x, w, b):  # y has one element; .sum() makes it the scalar jax.grad wants
        return (w * x + b).sum()

    gx, gw, gb = jax.grad(y_of, argnums=(0, 1, 2))(x, w, b)
    return {"y": w * x + b, "x_grad": gx, "w_grad": gw, "b_grad": gb}, text(
        show("x, w, b = jnp.array([1.0]), jnp.array([2.0]), jnp.array([3.0]); w * x + b",
             w * x + b),
        show("jax.grad(lambda x, w, b: (w * x + b).sum(), argnums=(0, 1, 2))(x, w, b)"
             "   # y.backward(); x.grad, w.grad, b.grad", (gx, gw, gb)),
        note("Variable has been a plain Tensor since PyTorch 0.4; in JAX every array is "
             "differentiable. y.backward() on a one-element y is allowed in torch; jax.grad "
             "needs a scalar, hence .sum()."))


def sec_backward_v(ctx: Context) -> tuple[dict, str]:
    x = jnp.array([4.0, 5.0, 6.0])             # seed 004's x
    w = jax.random.normal(ctx.key, (3,))
    v = jnp.array(V)
    y, pullback = jax.vjp(lambda w, x: w * x, w, x)
    w_grad, x_grad = pullback(v)
    return {"x": x, "w": w, "v": v, "y": y, "w_grad": w_grad, "x_grad": x_grad,
            "v_times_x": v * x}, text(
        show("x = jnp.array([4.0, 5.0, 6.0]); w = jax.random.normal(key, (3,)); y = w * x", y),
        show("y, pullback = jax.vjp(lambda w, x: w * x, w, x); w_grad, x_grad = pullback(v)"
             "\n>>> w_grad                          # y.backward(v); w.grad", w_grad),
        show("v * x                             # the numpy check: d(w*x)/dw = x", v * x),
        show("x_grad                            # x.grad = v * w", x_grad),
        note("y is a vector, so backward needs v and gives v * x for w (the seed writes the "
             "numpy check as v * w, which is x's gradient); vjp returns the gradients of all "
             "the function's inputs at once."))


# --- second-order optimisation -------------------------------------------------------------------


def log_f(x: jax.Array) -> jax.Array:
    """Seed 000's f(x) = log(x^4 + x^3 + 2); minimum at x = -3/4, flat saddle at x = 0."""
    return jnp.log(x ** 4 + x ** 3 + 2)


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


def sec_newton(ctx: Context) -> tuple[dict, str]:
    t_c, t_u = thermo.data()
    p0 = jnp.array([1.0, 0.0])

    def loss(p):
        return thermo.params_loss(p, t_u, t_c)

    newton_path = minimise(loss, p0, optim.newton(loss), 2)
    gd_path = minimise(loss, p0, optax.sgd(1e-4), 100)
    a = np.stack([np.asarray(t_u, np.float64), np.ones(11)], 1)
    exact = np.linalg.lstsq(a, np.asarray(t_c, np.float64), rcond=None)[0]

    x_star = -0.75
    f_runs = {}
    for x0 in (-1.0, -1.5):
        newton_xs = minimise(log_f, jnp.float32(x0), optim.newton(log_f), 20)
        gd_xs = minimise(log_f, jnp.float32(x0), optax.sgd(0.1), 200)
        f_runs[str(x0)] = {
            "newton_x": newton_xs, "gd_x": gd_xs,
            "newton_steps": steps_to(newton_xs, x_star), "gd_steps": steps_to(gd_xs, x_star)}

    def steps(n):
        return "never" if n is None else f"{n} steps"

    values = {
        "thermometer": {"newton_params": newton_path[1], "newton_loss": loss(newton_path[1]),
                        "newton_params_step2": newton_path[2], "least_squares": exact,
                        "gd_params_100": gd_path[-1], "gd_loss_100": loss(gd_path[-1])},
        "log_f": f_runs,
    }
    lines = [
        show("tx = jaxnets.optim.newton(loss)   # w = w - H^-1 dL/dw, H from jax.hessian\n"
             ">>> one Newton step from [w, b] = [1, 0] on the thermometer's mean squared error",
             newton_path[1]),
        show("loss after it", loss(newton_path[1])),
        show("least squares (numpy lstsq, float64)", exact.round(4)),
        show("gradient descent, lr 1e-4, after 100 steps (params, loss at them)",
             (gd_path[-1], loss(gd_path[-1]))),
        note("the loss is quadratic in (w, b), so its second-order model is exact and one "
             "step solves it; a second step stays put. Gradient descent needs a small lr for the "
             "steep w direction and crawls along the flat b direction (ill-conditioning is what "
             "normalising t_u fixes)."),
    ]
    for x0, r in f_runs.items():
        lines.append(show(
            f"f(x) = log(x^4 + x^3 + 2) from x = {x0}: Newton | gradient descent lr 0.1",
            f"Newton: {steps(r['newton_steps'])} to x* = -0.75, ends at "
            f"{float(r['newton_x'][-1]):.5f} | GD: {steps(r['gd_steps'])}, ends at "
            f"{float(r['gd_x'][-1]):.5f}"))
    lines.append(note(
        "Newton converges quadratically near the minimum (f'' > 0) but seeks any stationary "
        "point: from -1.5 its first step overshoots into the region where it heads for the "
        "flat saddle at x = 0, which gradient descent, always going downhill, avoids. Second "
        "order methods need a convex problem or safeguards (line search, damping)."))
    return values, text(*lines)


SECTIONS: tuple[Section, ...] = (
    Section("requires_grad", "x = torch.ones(2, 2, requires_grad=True); y = x + 2; "
            "z = y * y * 3; out = z.mean()", sec_requires_grad),
    Section("backward", "out.backward(); print(x.grad)", sec_backward),
    Section("requires_grad_", "a.requires_grad_(True); b = (a * a).sum()", sec_requires_grad_),
    Section("grad_fn", "print(y.grad_fn); x.grad_fn", sec_grad_fn),
    Section("vjp", "while y.data.norm() < 1000: y = y * 2; y.backward(v); x.grad", sec_vjp),
    Section("no_grad", "with torch.no_grad(): print((x ** 2).requires_grad)", sec_no_grad),
    Section("variable", "x, w, b = Variable(...); y = w * x + b; y.backward()", sec_variable),
    Section("backward_v", "y = w * x; y.backward(v); w.grad", sec_backward_v),
    Section("newton", "second-order optimisation: w = w - eta * H^-1 dL/dw", sec_newton),
)


def run(config: Config) -> dict:
    """Run the chosen sections; returns {section name: values} (also in metrics.json)."""
    return run_tour("autograd", SECTIONS, section=config.section, list_only=config.list,
                    seed=config.seed, out=config.out, progress=not config.quiet)


def main(argv=None) -> int:
    """The command line: flags from Config; returns the exit status (2: a user error)."""
    return cli.main(Config, run, __doc__, argv)


if __name__ == "__main__":
    sys.exit(main())
