"""Shared fixtures: small real data (Debian's Fashion-MNIST) and generated IDX files."""

from __future__ import annotations

import gzip
import os

import numpy as np
import pytest

FASHION_DIR = "/usr/share/datasets/fashion-mnist"

# The suite's compiled programs (and those of the commands it runs in subprocesses, which
# inherit this) go to a compile cache of their own, kept between sessions so the suite stays
# quick, instead of filling the user's cache with test shapes. An explicit
# JAX_COMPILATION_CACHE_DIR still wins; the tests of the cache itself set their own folder.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(
    os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"),
    "jaxnets", "xla-tests"))
# Bounded, so JAX locks the folder around reads and writes: the suite's parallel processes
# (pytest-xdist) share it, and unbounded JAX writes entries in place (a reader could see one
# half written). The same bound as the experiments' (experiments.cli.CACHE_MAX_BYTES).
os.environ.setdefault("JAX_COMPILATION_CACHE_MAX_SIZE", str(2 * 2**30))
# Every program, as the experiments do (JAX's defaults skip those compiled in under a second,
# and the suite's are nearly all small).
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "-1")


def pytest_addoption(parser):
    parser.addoption("--site", default=None, metavar="DIR",
                     help="a built lessons site (python -m sphinx -W -b html docs DIR) for "
                          "tests/test_site.py's browser tests")


@pytest.fixture(scope="session")
def fashion():
    """(train, test) Fashion-MNIST Datasets from the local Debian install (setup.sh installs it)."""
    from jaxnets import data

    if not os.path.isfile(os.path.join(FASHION_DIR, "train-images-idx3-ubyte.gz")):
        pytest.fail("Fashion-MNIST missing: run ./setup.sh (apt-get install dataset-fashion-mnist)")
    return data.load("fashion_mnist", "train"), data.load("fashion_mnist", "test")


def write_idx(path: str, array: np.ndarray, gz: bool = False) -> str:
    """Write a uint8 array as an IDX file (optionally gzipped)."""
    array = np.asarray(array, np.uint8)
    header = bytes([0, 0, 8, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    payload = header + array.tobytes()
    if gz:
        payload = gzip.compress(payload)
    with open(path, "wb") as f:
        f.write(payload)
    return path


def make_idx_dir(directory: str, n_train: int = 64, n_test: int = 32, seed: int = 0,
                 gz: bool = False) -> str:
    """A folder of MNIST-style IDX files with random images and labels."""
    rng = np.random.default_rng(seed)
    os.makedirs(directory, exist_ok=True)
    ext = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        write_idx(os.path.join(directory, f"{prefix}-images-idx3-ubyte{ext}"),
                  rng.integers(0, 256, (n, 28, 28)), gz)
        write_idx(os.path.join(directory, f"{prefix}-labels-idx1-ubyte{ext}"),
                  rng.integers(0, 10, (n,)), gz)
    return directory


@pytest.fixture(autouse=True)
def _no_background_import_outlives_a_test():
    """A test that ends before cli.main's background import of matplotlib (plots.preload) does
    leaves it running into the next test, or into pytest's summary, whose assertion rewriting
    then compiles at the same time: Python 3.11.7 can fail that with 'SystemError: AST
    constructor recursion depth mismatch' (an INTERNALERROR of the whole session)."""
    yield
    import sys

    plots = sys.modules.get("jaxnets.plots")
    if plots is not None:
        plots.wait_for_preload()
