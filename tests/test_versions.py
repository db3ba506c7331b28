"""Random numbers are a function of the seed, not of the installed jax (jaxnets/prng.py)."""

import os
import subprocess
import sys
import textwrap

# Every module that draws random numbers or initialises parameters: importing any one of them
# (and nothing else of ours) must pin jax_threefry_partitionable to True, whatever jax's default.
DRAWING_MODULES = [
    "jaxnets.init", "jaxnets.models", "jaxnets.resnet", "jaxnets.thermometer", "jaxnets.train",
    "jaxnets.data.batching", "experiments.tour", "experiments.tensors", "experiments.autograd",
    "experiments.mnist", "experiments.lenet", "experiments.cifar10",
    "experiments.linear_classifier", "experiments.two_layer", "experiments.resnet_step",
    "experiments.thermometer", "jaxnets.nnx_lenet", "experiments.lenet_nnx",
]


def test_every_drawing_module_pins_threefry():
    # One process: set the option to the old default, forget our modules, import one, look.
    # jaxnets/__init__.py is replaced by an empty package, so a module cannot pass only because
    # the package's __init__ happens to import a module that imports jaxnets.prng.
    code = textwrap.dedent(f"""
        import importlib, importlib.util, sys, types
        import jax
        locations = importlib.util.find_spec("jaxnets").submodule_search_locations
        missing = []
        for name in {DRAWING_MODULES!r}:
            jax.config.update("jax_threefry_partitionable", False)
            for mod in [m for m in sys.modules if m.split(".")[0] in ("jaxnets", "experiments")]:
                del sys.modules[mod]
            sys.modules["jaxnets"] = types.ModuleType("jaxnets")
            sys.modules["jaxnets"].__path__ = list(locations)
            importlib.import_module(name)
            if not jax.config.jax_threefry_partitionable:
                missing.append(name)
        print("MISSING", missing)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=300, check=False)
    assert out.returncode == 0, out.stderr
    assert "MISSING []" in out.stdout, out.stdout


def test_pinned_setting_draws_todays_numbers():
    """The pinned setting is jax's current default: the first draws of key 0 are these."""
    code = ("import jax, jaxnets.prng\n"
            "print(jax.random.normal(jax.random.key(0), (3,)).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False,
                         env={**os.environ, "JAX_THREEFRY_PARTITIONABLE": "0"})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[1.622642159461975, 2.0252647399902344, -0.4335944354534149]"
