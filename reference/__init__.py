"""The seeds' own PyTorch code, kept apart from the lessons (experiments/) and the library.

- `reference.seeds`: the tutorials' code as functions (their loops from given weights and batch
  order, their networks), for the parity tests, `experiments.report --seeds` and the benchmarks;
- `python -m reference.seed000` / `reference.seed004`: seed 000's script and seed 004's notebook
  run whole, the baselines `benchmarks.end_to_end` times jaxnets' commands against.

Everything here imports torch (the `dev` extra) and nothing of jaxnets.
"""
