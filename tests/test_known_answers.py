"""Known answers, computed by hand or by the tutorial's own loop, for code whose one-line bugs
survived issue 23's mutation test (no test of its result, only of its shape or of a whole run):
the confusion matrix's orientation, the mask in the training accuracy, the per-step key,
cifar10's running-loss prints, seed 000's `x / x.max()`.
"""

from __future__ import annotations

import types

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import data as D
from jaxnets import metrics as M
from jaxnets import train
from jaxnets.options import TrainOptions

# --- metrics: counts[true, predicted], per-class accuracy = recall ---------------------------

# 3 classes; class 0 has 3 examples (1 right), class 1 has 2 (1 right), class 2 has 1 (right).
LABELS = [0, 0, 0, 1, 1, 2]
PREDS = [0, 1, 1, 1, 2, 2]


def test_confusion_matrix_rows_are_true_classes():
    cm = M.confusion_matrix(LABELS, PREDS, 3)
    np.testing.assert_array_equal(cm, [[1, 2, 0],
                                       [0, 1, 1],
                                       [0, 0, 1]])


def test_per_class_accuracy_is_recall_not_precision():
    """torch tutorial: 'Accuracy for class X' = correct X predictions / X examples. Precision
    (a transposed matrix) would give 1, 1/3, 1/2."""
    per_class = M.per_class_accuracy(M.confusion_matrix(LABELS, PREDS, 3))
    np.testing.assert_allclose(per_class, [1 / 3, 1 / 2, 1.0])
    # A class without examples has no accuracy (NaN), not 0.
    with_empty = M.per_class_accuracy(M.confusion_matrix([0, 1], [0, 0], 3))
    np.testing.assert_allclose(with_empty[:2], [1.0, 0.0])
    assert np.isnan(with_empty[2])


def test_accuracy_known_answer():
    logits = np.eye(3)[PREDS] * 5.0
    assert M.accuracy(logits, LABELS) == pytest.approx(3 / 6)
    np.testing.assert_array_equal(M.predictions(logits), PREDS)


# --- classification_loss honours the mask (padded rows count 0) -------------------------------


def test_classification_loss_ignores_padded_rows():
    """Two real rows (one right, one wrong) and two padded rows that would be right: accuracy
    1/2 (not 3/4), and the loss the mean cross-entropy of the two real rows."""
    logits = jnp.array([[2.0, 0.0], [0.0, 3.0], [5.0, 0.0], [5.0, 0.0]])
    batch = {"image": logits, "label": jnp.array([0, 0, 0, 0]),
             "mask": jnp.array([1.0, 1.0, 0.0, 0.0])}
    loss_fn = train.classification_loss(lambda variables, x: x)
    loss, (metrics, _) = loss_fn({}, {}, batch, jax.random.key(0))
    assert float(metrics["accuracy"]) == pytest.approx(0.5)
    # CE([2, 0], 0) = log(1 + e^-2); CE([0, 3], 0) = log(1 + e^3)
    expected = (np.log1p(np.exp(-2.0)) + np.log1p(np.exp(3.0))) / 2
    assert float(loss) == pytest.approx(expected, rel=1e-6)
    # No mask: every row counts.
    del batch["mask"]
    loss, (metrics, _) = loss_fn({}, {}, batch, jax.random.key(0))
    assert float(metrics["accuracy"]) == pytest.approx(0.75)


def test_padded_last_batch_of_an_epoch_through_the_loop():
    """The same through the compiled loop: 5 examples in batches of 4, so the second batch has
    3 padded slots (index 0, mask False). A model that gets examples 0..3 right and 4 wrong:
    step 1's accuracy is 0 (one real row, wrong), not 3/4 (the padded copies of example 0)."""
    images = jnp.array([[5.0, 0.0]] * 4 + [[0.0, 5.0]])
    labels = jnp.zeros(5, jnp.int32)
    state = train.TrainState.create(apply_fn=lambda v, x: x + 0 * v["params"]["w"],
                                    params={"w": jnp.zeros(())}, tx=optax.sgd(0.0))
    step = train.make_train_step(train.classification_loss(state.apply_fn))
    loop = train.make_run_steps(step)
    sampler = D.EpochSampler(5, 4, key=None)
    _, history = train.fit(state, loop, {"image": images, "label": labels}, sampler, 2,
                           jax.random.key(0), progress=False)
    np.testing.assert_allclose(history.metrics["accuracy"], [1.0, 0.0])


# --- the per-step key: step t trains with fold_in(keys.train, t) ------------------------------


def _key_loss(params, model_state, batch, key):
    """A loss that uses its key, and reports the key's bits as a metric (so they are seen)."""
    noise = jax.random.normal(key, ())
    bits = jax.random.key_data(key).astype(jnp.float32)
    loss = jnp.sum(params["w"] * batch["image"][:, 0]) * noise
    return loss, ({"k0": bits[0], "k1": bits[1]}, model_state)


def test_step_t_uses_fold_in_of_the_training_key_at_t():
    """Chunks of 3 over 7 steps, from step 0 and resumed from step 4: every step's key is
    fold_in(key, global step), never the same key twice."""
    key = jax.random.key(42)
    state = train.TrainState.create(apply_fn=None, params={"w": jnp.ones(())},
                                    tx=optax.sgd(0.1))
    loop = train.make_run_steps(train.make_train_step(_key_loss))
    data = {"image": jnp.arange(8.0).reshape(8, 1), "label": jnp.zeros(8, jnp.int32)}
    sampler = D.EpochSampler(8, 2, key=None)

    def expected(t):
        bits = np.asarray(jax.random.key_data(jax.random.fold_in(key, t)), np.float32)
        return bits[0], bits[1]

    _, history = train.fit(state, loop, data, sampler, 7, key, chunk_size=3, progress=False)
    got = list(zip(history.metrics["k0"], history.metrics["k1"]))
    assert got == [expected(t) for t in range(7)]
    assert len(set(got)) == 7
    later = state.replace(step=jnp.asarray(4, jnp.int32))
    _, history = train.fit(later, loop, data, sampler, 7, key, chunk_size=3, progress=False)
    assert list(zip(history.metrics["k0"], history.metrics["k1"])) == [expected(t)
                                                                     for t in (4, 5, 6)]


# --- cifar10's running-loss prints: the tutorial's loop over known losses ---------------------


def _tutorial_prints(losses, steps_per_epoch, every, epochs):
    """The blitz tutorial's loop, verbatim but for the loss values (Python floats, summed one
    mini-batch at a time)."""
    out, t = [], 0
    for epoch in range(epochs):
        running_loss = 0.0
        for i in range(steps_per_epoch):
            running_loss += float(losses[t])
            t += 1
            if i % every == every - 1:
                out.append(f"[{epoch + 1}, {i + 1:5d}] loss: {running_loss / every:.3f}")
                running_loss = 0.0
    return out


@pytest.mark.parametrize("steps_per_epoch,every,chunk", [(5, 2, 5), (7, 3, 2), (6, 6, 4),
                                                         (4, 1, 3)])
def test_cifar10_running_loss_prints_equal_the_tutorial_loop(steps_per_epoch, every, chunk,
                                                             monkeypatch, capsys):
    """Known per-step losses through cifar10.train_network's print hook (the training replaced
    by a loop that hands out the known losses chunk by chunk): the prints and the logged values
    are the tutorial's, and the logs hold every print once."""
    from experiments import cifar10, cli

    epochs = 2
    rng = np.random.default_rng(steps_per_epoch * 10 + every)
    losses = rng.uniform(0.5, 2.5, steps_per_epoch * epochs).astype(np.float32)

    def fake_run_training(state, train_step, data, sampler, num_steps, keys, options=None, *,
                          on_chunk, **kwargs):
        assert num_steps == len(losses)
        history = train.History()
        for start in range(0, num_steps, chunk):
            history.chunk_start = start
            history.add({"loss": losses[start:start + chunk]})
            on_chunk(state, history)
        return state, history

    monkeypatch.setattr(cifar10.train, "run_training", fake_run_training)
    config = cifar10.Config(epochs=epochs, batch_size=1, print_every=every,
                            options=TrainOptions(out="unused", progress=False))
    sampler = types.SimpleNamespace(steps_per_epoch=steps_per_epoch)
    state = types.SimpleNamespace(apply_fn=lambda v, x: x)
    train_set = types.SimpleNamespace(images=None, labels=None)
    _, history = cifar10.train_network(config, state, train_set, sampler, None, cli.Reporter())
    printed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("[")]
    want = _tutorial_prints(losses, steps_per_epoch, every, epochs)
    assert printed == want and want
    logged = [f"[{e}, {i:5d}] loss: {v:.3f}" for e, i, v in history.logs["running_losses"]]
    assert logged == want


def test_running_losses_known_values():
    """By hand: 5 steps an epoch, a print every 2: windows (1,2), (3,4), then the epoch's last
    loss is dropped (running_loss is reset each epoch), (6,7), (8,9)."""
    from experiments import cifar10

    losses = np.arange(1.0, 11.0, dtype=np.float32)
    assert cifar10.running_losses(losses, 5, 2) == [(1, 2, 1.5), (1, 4, 3.5), (2, 2, 6.5),
                                                     (2, 4, 8.5)]
    assert cifar10.running_losses(losses, 5, 2, start=4, stop=7) == [(2, 2, 6.5)]


# --- seed 000's x / x.max(): the batch's own maximum, not 255 ---------------------------------


def test_divide_by_batch_max_uses_the_batch_maximum():
    x = np.array([[0, 50], [100, 200]], np.uint8)
    np.testing.assert_array_equal(np.asarray(D.divide_by_batch_max(x)),
                                  np.array([[0, 0.25], [0.5, 1.0]], np.float32))
    # over the whole batch, not per example or per feature
    y = np.array([[10, 20], [40, 80]], np.uint8)
    np.testing.assert_array_equal(np.asarray(D.divide_by_batch_max(y)),
                                  np.array([[0.125, 0.25], [0.5, 1.0]], np.float32))
    # an all-zero batch is 0 / 0, NaN, as in the seed
    assert np.isnan(np.asarray(D.divide_by_batch_max(np.zeros((2, 2), np.uint8)))).all()


# --- the edges of two library rules ------------------------------------------------------------


def test_a_batch_that_needs_exactly_the_memory_fits():
    """check_batch_fits' bound, by hand: 28x28x1 images and labels, each widened to 4 bytes
    (3136 + 4), plus 8 bytes of index and mask per step of a 10-step chunk: 1000 examples need
    1000 * (3140 + 80) = 3,220,000 bytes. Exactly that fits; a byte less does not."""
    from jaxnets.errors import ConfigError

    data = {"image": np.zeros((10, 28, 28, 1), np.uint8), "label": np.zeros(10, np.int32)}
    train.check_batch_fits(data, 1000, 10, memory=3_220_000)
    with pytest.raises(ConfigError, match="needs at least"):
        train.check_batch_fits(data, 1000, 10, memory=3_219_999)


def test_a_weighted_mean_over_no_weight_is_zero():
    """A batch whose every row is padding (mask all 0): the mean over no example is 0, not
    0 / 0 = NaN (which would poison the parameters through the gradient)."""
    from jaxnets import losses

    logits = jnp.array([[2.0, 0.0], [0.0, 3.0]])
    value = losses.cross_entropy(logits, jnp.array([0, 1]), weights=jnp.zeros(2))
    assert float(value) == 0.0
    grad = jax.grad(lambda x: losses.cross_entropy(x, jnp.array([0, 1]),
                                                   weights=jnp.zeros(2)))(logits)
    assert np.all(np.asarray(grad) == 0)
