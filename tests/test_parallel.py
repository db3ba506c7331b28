"""Data parallel training on 8 fake CPU devices equals single-device training.

XLA_FLAGS must be set before jax is imported, so the 8-device run is a subprocess; it prints
one JSON line that the tests below check.
"""

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from jaxnets import parallel
from jaxnets.errors import ConfigError

SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from jaxnets import data as D, optim, parallel, train
    from jaxnets.errors import ConfigError
    from flax import linen as nn
    from jaxnets import layers as L

    class MLP(nn.Module):
        @nn.compact
        def __call__(self, x):
            return L.Linear(10)(nn.relu(L.Linear(32)(x)))

    assert jax.device_count() == 8, jax.devices()
    rng = np.random.default_rng(0)
    # 250 examples, batch 32: the last batch of each epoch is padded and masked.
    data = {"image": rng.integers(0, 256, (250, 8, 8, 1), dtype=np.uint8),
            "label": rng.integers(0, 10, 250).astype(np.int32)}
    model = MLP()
    params = model.init(jax.random.key(0), jnp.zeros((1, 64)))["params"]
    preprocess = lambda x: x.reshape(x.shape[0], -1).astype(jnp.float32) / 255.0
    loss_fn = train.classification_loss(model.apply, preprocess)
    sampler = D.EpochSampler(250, 32, jax.random.key(1))
    mesh = parallel.make_mesh(8)
    out = {}
    for name, tx in (("sgd", optim.sgd(0.1, momentum=0.9)), ("adam", optim.adam(1e-2))):
        state = train.TrainState.create(apply_fn=model.apply, params=params, tx=tx)
        step = train.make_train_step(loss_fn)
        one, r1 = train.fit(state, train.make_run_steps(step), D.to_device(data), sampler, 20,
                            jax.random.key(2), chunk_size=8, progress=False)
        run8 = train.make_run_steps(step, mesh=mesh)
        many, r8 = train.fit(state, run8, D.to_device(data), sampler, 20, jax.random.key(2),
                             chunk_size=8, progress=False, mesh=mesh)
        diff = jax.tree.map(lambda a, b: float(np.max(np.abs(np.asarray(a) - np.asarray(b)))),
                            one.params, many.params)
        leaf = jax.tree.leaves(many.params)[0]
        idx, mask = sampler.indices(0, 8)
        placed = parallel.replicate((state, D.to_device(data), jax.random.key(2)), mesh)
        hlo = run8.lower(placed[0], placed[1], *parallel.shard_batch((idx, mask), mesh, 1),
                         placed[2]).compile().as_text()
        out[name] = {
            "param_diff": max(jax.tree.leaves(diff)),
            "loss_diff": float(np.max(np.abs(r1.metrics["loss"] - r8.metrics["loss"]))),
            "losses": r8.metrics["loss"].tolist(),
            "param_devices": len(leaf.sharding.device_set),
            "replicated": leaf.sharding.is_fully_replicated,
            "all_reduce": "all-reduce" in hlo,
            "steps": int(many.step),
        }
    try:
        train.fit(state, run8, D.to_device(data), D.EpochSampler(250, 30), 4, jax.random.key(2),
                  progress=False, mesh=mesh)
        out["indivisible"] = None
    except ConfigError as e:
        out["indivisible"] = str(e)
    print("RESULT " + json.dumps(out))
""")


@pytest.fixture(scope="module")
def eight_devices():
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          env=env, timeout=900, check=False,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, f"subprocess failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    return json.loads(lines[-1][len("RESULT "):])


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_eight_devices_equal_one_device(eight_devices, optimizer):
    r = eight_devices[optimizer]
    assert r["steps"] == 20
    assert r["param_diff"] < 1e-6
    assert r["loss_diff"] < 1e-6
    assert np.all(np.isfinite(r["losses"])) and r["losses"][-1] != r["losses"][0]  # it trained


@pytest.mark.slow
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_eight_devices_really_shard(eight_devices, optimizer):
    r = eight_devices[optimizer]
    assert r["param_devices"] == 8 and r["replicated"]   # params whole on all 8 devices
    assert r["all_reduce"]                               # gradients summed across devices


@pytest.mark.slow  # the eight-device subprocess
def test_batch_not_divisible_by_devices_is_a_clear_error(eight_devices):
    message = eight_devices["indivisible"]
    assert message is not None
    assert "batch size 30 is not divisible by the 8 devices" in message


def test_more_devices_than_available_is_a_clear_error():
    with pytest.raises(ConfigError, match="more than jax sees") as info:
        parallel.make_mesh(jax.device_count() + 1)
    assert info.value.param == "devices"
    with pytest.raises(ConfigError, match="positive integer"):
        parallel.make_mesh(0)


def test_single_device_mesh_places_state_and_batch():
    mesh = parallel.make_mesh(1)
    tree = parallel.replicate({"w": np.ones((3, 2), np.float32), "key": jax.random.key(0)}, mesh)
    assert tree["w"].sharding.is_fully_replicated
    np.testing.assert_array_equal(jax.random.key_data(tree["key"]),
                                  jax.random.key_data(jax.random.key(0)))
    idx = parallel.shard_batch(np.arange(8).reshape(2, 4), mesh, batch_axis=1)
    assert idx.sharding.spec == parallel.batch_sharding(mesh, 1).spec


def test_gather_of_multi_dim_examples_equals_numpy_indexing():
    # batching.gather reads [N, H, W, C] rows through a 2-D view (faster on XLA:CPU)
    from jaxnets.data import gather

    rng = np.random.default_rng(0)
    data = {"image": rng.integers(0, 256, (20, 4, 5, 3), dtype=np.uint8),
            "label": np.arange(20, dtype=np.int32)}
    idx = np.array([[3, 7, 19, 3], [0, 0, 1, 2]])
    out = jax.jit(gather)(data, idx)
    for k, v in data.items():
        np.testing.assert_array_equal(np.asarray(out[k]), v[idx])


def test_mnist_cli_devices_must_divide_the_batch(capsys, tmp_path):
    from experiments import mnist

    assert mnist.main(["--devices", "3", "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "--batch-size: 100 must be a multiple of the 3 devices" in err
    assert err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("experiment, argv", [
    ("linear_classifier", ["--epochs", "1", "--batch-size", "64"]),
    ("cifar10", ["--epochs", "1", "--batch-size", "4", "--print-every", "25"]),
])
@pytest.mark.slow
def test_experiment_cli_on_two_devices_equals_one(experiment, argv, tmp_path):
    """`--devices 2` through the experiment's own CLI (2 fake CPU devices) trains to the same
    per-step losses as one device."""
    if experiment == "cifar10":
        from jaxnets.data import cifar

        rng = np.random.default_rng(0)
        for name in cifar.TRAIN_FILES + cifar.TEST_FILES:
            cifar.write_batch(str(tmp_path / name),
                              rng.integers(0, 256, (20, 32, 32, 3), dtype=np.uint8),
                              rng.integers(0, 10, 20))
    else:
        from conftest import make_idx_dir

        make_idx_dir(str(tmp_path), n_train=640, n_test=64)
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2")
    losses = {}
    for devices in ("1", "2"):
        out = tmp_path / f"out{devices}"
        cmd = [sys.executable, "-m", f"experiments.{experiment}", *argv, "--data-dir",
               str(tmp_path), "--devices", devices, "--no-progress", "--out", str(out)]
        if experiment == "linear_classifier":
            cmd += ["--dataset", "mnist"]
        proc = subprocess.run(cmd, check=False, capture_output=True, text=True, env=env,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr[-3000:]
        losses[devices] = np.asarray(json.loads((out / "metrics.json").read_text())["losses"])
    assert losses["1"].shape == losses["2"].shape and len(losses["1"]) > 0
    np.testing.assert_allclose(losses["2"], losses["1"], rtol=1e-5, atol=1e-6)
