"""Programs compiled ahead of time: exact compile seconds, and cheap compiles for one-shot work.

`Program(fn)` is `jax.jit(fn)` compiled with `.lower(...).compile()` once per input signature
(shapes, dtypes, placements and the values of static arguments), so the caller can be told how
long the compile took (`compiled`), and calling it never compiles behind its back. The training
loop is one (`train.make_run_steps`).

`once` makes a `Program` for the random draws a command makes once: a model's
initialisation, a sampler's indices, the key split. These are compiled at XLA's backend
optimisation level 2 instead of its default 3 (the LLVM pipeline after XLA's own passes): for
mnist's initialisation that is 0.25-0.3 s of compiling instead of 0.9-1.1 s, a large part of a
cold start. The bits are the same: these programs are integer hashing and element-wise float
arithmetic, where -O2 and -O3 differ in how hard LLVM unrolls and vectorises, not in the floats
(FMA contraction is the same at -O1 to -O3; -O0 does change them). tests/test_aot.py compiles
each of them both ways and compares every output bit.

What keeps XLA's default: the training loop (-O2 moved mnist Adam's third loss by one float32
ulp, and compiled it only ~7% quicker), and forward passes such as
evaluation and mnist's snippet (a matrix-vector product that XLA emits itself came out one
ulp apart in one of its 10 outputs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import jax
import numpy as np

# XLA's option for one-shot programs (see the module docstring; level 3 is XLA's default).
ONCE_OPTIONS = {"xla_backend_optimization_level": 2}


def _leaf_signature(x) -> tuple:
    dtype = getattr(x, "dtype", None)
    return (np.shape(x), str(dtype) if dtype is not None else type(x).__name__,
            bool(getattr(x, "weak_type", dtype is None)), getattr(x, "sharding", None))


class Program:
    """`jax.jit(fn, static_argnums=...)`, compiled ahead of time per input signature, with the
    executables kept (`compiled` says how long a compile took; 0.0 when it was already built)."""

    def __init__(self, fn: Callable, static_argnums: Sequence[int] = (),
                 compiler_options: dict | None = None):
        self._jit = jax.jit(fn, static_argnums=tuple(static_argnums))
        self._static = frozenset(static_argnums)
        self._options = dict(compiler_options) if compiler_options else None
        self._executables: dict = {}
        self.__wrapped__ = fn

    def _dynamic(self, args: tuple) -> list:
        return [a for i, a in enumerate(args) if i not in self._static]

    def lower(self, *args):
        """`jax.jit(fn).lower(...)`, e.g. to read the compiled HLO."""
        return self._jit.lower(*args)

    def compiled(self, *args) -> tuple[Callable, float]:
        """The executable for these inputs, and the seconds spent lowering and compiling it now
        (0.0 when an earlier call compiled it). It takes the non-static arguments only."""
        leaves, tree = jax.tree.flatten(self._dynamic(args))
        signature = (tree, tuple(_leaf_signature(x) for x in leaves),
                     tuple(args[i] for i in sorted(self._static)))
        if signature in self._executables:
            return self._executables[signature], 0.0
        t0 = time.perf_counter()
        executable = self._jit.lower(*args).compile(self._options)
        seconds = time.perf_counter() - t0
        self._executables[signature] = executable
        return executable, seconds

    def __call__(self, *args):
        if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(args)):
            return self._jit(*args)   # inside another trace (jit, make_jaxpr, grad): as jit
        executable, _ = self.compiled(*args)
        return executable(*self._dynamic(args))


def once(fn: Callable | None = None, *, static_argnums: Sequence[int] = ()):
    """Decorator: `fn` as a `Program` compiled with `ONCE_OPTIONS` (for code run once per
    command; same bits, a quicker compile). `@once` or `@once(static_argnums=(2,))`."""
    if fn is None:
        return lambda f: Program(f, static_argnums, ONCE_OPTIONS)
    return Program(fn, static_argnums, ONCE_OPTIONS)
