"""Seed 002's two-layer net: jaxnets' four versions against the seed's own code run in PyTorch."""

import json
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from experiments import two_layer as T
from jaxnets import torch_io
from jaxnets.errors import ConfigError
from jaxnets.models import sequential_rename
from jaxnets.options import RunOptions
from reference import seeds

EPOCHS = 20


def _torch_start(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"x": torch.randn(100, 1000, generator=g), "y": torch.randn(100, 10, generator=g),
            "w1": torch.randn(1000, 100, generator=g), "w2": torch.randn(100, 10, generator=g)}


def _torch_manual(s: dict) -> list[float]:
    """The seed's first listing, verbatim apart from collecting the losses."""
    x, y, w1, w2 = s["x"], s["y"], s["w1"].clone(), s["w2"].clone()
    learning_rate, out = 1e-6, []
    for _ in range(EPOCHS):
        h1 = x.mm(w1)
        h1 = h1.clamp(min=0)
        y_pred = h1.mm(w2)
        loss = (y_pred - y).pow(2).sum()
        out.append(loss.item())
        grad_y_pred = 2 * (y_pred - y)
        grad_w2 = h1.t().mm(grad_y_pred)
        grad_h = grad_y_pred.clone()
        grad_h = grad_h.mm(w2.t())
        grad_h.clamp_(min=0)
        grad_w1 = x.t().mm(grad_h)
        w1 -= learning_rate * grad_w1
        w2 -= learning_rate * grad_w2
    return out


def _torch_autograd(s: dict) -> list[float]:
    """The seed's Variable/backward listing, from reference.seeds."""
    return seeds.two_layer_autograd(s["x"], s["y"], s["w1"], s["w2"], EPOCHS, 1e-6)


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    start = _torch_start()
    out = str(tmp_path_factory.mktemp("two_layer"))
    config = T.Config(epochs=EPOCHS, options=RunOptions(out=out, progress=False))
    metrics = T.run(config, {k: v.numpy() for k, v in start.items()})
    return start, config, metrics


@pytest.mark.slow
def test_same_start_versions_give_identical_losses(result):
    _, _, m = result
    ref = np.asarray(m["losses"]["autograd"])
    assert ref[-1] < 0.5 * ref[0]  # it trains
    for version in T.SAME_START:
        np.testing.assert_allclose(m["losses"][version], ref, rtol=1e-6)
    # The seed's clamp_(min=0) backward is not ReLU's derivative: a different trajectory.
    assert np.max(np.abs(np.asarray(m["losses"]["manual"]) - ref) / ref) > 1e-2


def test_losses_match_the_seeds_pytorch_code(result):
    start, _, m = result
    np.testing.assert_allclose(m["losses"]["manual"], _torch_manual(start), rtol=1e-4)
    np.testing.assert_allclose(m["losses"]["autograd"], _torch_autograd(start), rtol=1e-4)


def test_hand_written_gradients(result):
    start, _, _ = result
    s = {k: jnp.asarray(v.numpy()) for k, v in start.items()}

    def loss(w1, w2):
        return jnp.sum((jnp.maximum(s["x"] @ w1, 0) @ w2 - s["y"]) ** 2)

    auto = jax.grad(loss, argnums=(0, 1))(s["w1"], s["w2"])
    _, g1, g2 = T.hand_written(s["x"], s["y"], s["w1"], s["w2"], fixed=True)
    scale = [float(jnp.max(jnp.abs(a))) for a in auto]
    np.testing.assert_allclose(g1, auto[0], atol=1e-5 * scale[0])
    np.testing.assert_allclose(g2, auto[1], atol=1e-5 * scale[1])
    _, q1, _ = T.hand_written(s["x"], s["y"], s["w1"], s["w2"], fixed=False)
    assert float(jnp.max(jnp.abs(q1 - auto[0]))) > 0.1 * scale[0]
    # and the custom VJP really is the hand-written rule
    via_grad = jax.grad(T.hand_written_loss(False), argnums=(0, 1))(s["w1"], s["w2"], s["x"], s["y"])
    np.testing.assert_array_equal(via_grad[0], q1)


def test_structure_matches_torch_print(result):
    _, _, m = result
    ref = torch.nn.Sequential(torch.nn.Linear(1000, 100), torch.nn.ReLU(),
                              torch.nn.Linear(100, 10))
    assert m["sequential_structure"] == str(ref)


def test_sequential_torch_init_matches_torch(result):
    start, config, m = result
    s = {k: jnp.asarray(v.numpy()) for k, v in start.items()}
    _, init_key = jax.random.split(jax.random.key(config.seed))
    state = T.initial_state("sequential_torch_init", config, s, init_key)
    ref = torch.nn.Sequential(torch.nn.Linear(1000, 100), torch.nn.ReLU(),
                              torch.nn.Linear(100, 10))
    sd = torch_io.to_state_dict({"params": state.params}, rename=sequential_rename)
    ref.load_state_dict({k: torch.tensor(v) for k, v in sd.items()})
    out = seeds.blitz_train(ref, [(start["x"], start["y"])] * EPOCHS, epochs=1,
                                      lr=1e-6, momentum=0.0,
                                      criterion=lambda pred, y: (pred - y).pow(2).sum())
    np.testing.assert_allclose(m["losses"]["sequential_torch_init"], out, rtol=1e-5)


def test_writes_metrics_and_plot(result):
    _, config, m = result
    with open(os.path.join(config.options.out, "metrics.json")) as f:
        saved = json.load(f)
    assert len(saved["losses"]["manual"]) == EPOCHS
    assert saved["hand_written_grad_rel_diff"]["fixed_backward"] < 1e-5
    assert os.path.getsize(m["plots"][0]) > 0


def test_bad_config():
    with pytest.raises(ConfigError, match="epochs"):
        T.Config(epochs=0)
    with pytest.raises(ConfigError, match="lr"):
        T.Config(lr=-1.0)


def test_cli_bad_flag_exits_2(capsys):
    assert T.main(["--epochs", "0"]) == 2
    assert "--epochs: must be at least 1" in capsys.readouterr().err


@pytest.mark.slow
def test_tutorial_table_matches_the_seeds_settings_and_feeds_the_comparison(tmp_path):
    config = T.Config(options=RunOptions(out=str(tmp_path)))
    assert T.TUTORIAL["batch_n, input_data, hidden_layer, output_data"] == ", ".join(
        str(getattr(config, k)) for k in ("batch_n", "input_data", "hidden_layer", "output_data"))
    assert T.TUTORIAL["epoch_n, learning_rate"] == f"{config.epochs}, {config.lr:g}"
    assert T.REFERENCE == {}
    m = T.run(T.Config(epochs=2, options=RunOptions(out=str(tmp_path), progress=False)))
    rows = T.comparison_rows(m)
    assert [(name, theirs) for name, theirs, _ in rows[:len(T.TUTORIAL)]] == list(
        T.TUTORIAL.items())
    assert rows[2][2] == f"2, {config.lr:g}"  # ours, from this run's settings
