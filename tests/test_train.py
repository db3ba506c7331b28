"""The one training loop: compiles once, scan == step-by-step, chunking and unrolling do not
change results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from jaxnets import data, losses, optim, train
from jaxnets.errors import DataError
from jaxnets.models import SeedMLP
from jaxnets.options import TrainOptions

QUIET = TrainOptions(out="unused", progress=False)  # (run_training writes nothing to out)


def _setup(n=64, tx=None, seed=0):
    rng = np.random.default_rng(seed)
    arrays = {"image": rng.integers(0, 256, (n, 28, 28, 1), dtype=np.uint8),
              "label": rng.integers(0, 10, n).astype(np.int32)}
    model = SeedMLP(hidden=16)
    params = model.init(jax.random.key(seed), jnp.zeros((1, 784)))["params"]
    state = train.TrainState.create(apply_fn=model.apply, params=params,
                                    tx=tx or optim.seed_sgd(1e-3))
    pre = lambda x: data.divide_by_batch_max(data.flatten(x))
    return arrays, state, train.classification_loss(model.apply, pre)


def test_train_step_compiles_once():
    arrays, state, loss_fn = _setup()
    step = jax.jit(train.make_train_step(loss_fn))
    batch = {"image": arrays["image"][:8], "label": arrays["label"][:8]}
    key = jax.random.key(0)
    state, m1 = step(state, batch, key)
    state, m2 = step(state, batch, key)
    state, _ = step(state, batch, key)
    assert step._cache_size() == 1  # a Python-int step would have compiled a second time
    assert int(state.step) == 3 and float(m2["loss"]) != float(m1["loss"])


def test_scan_equals_step_by_step_and_chunking_is_invisible():
    arrays, state0, loss_fn = _setup(tx=optim.adam(1e-3))
    sampler = data.EpochSampler(64, 10, jax.random.key(1))  # 7 batches/epoch, last one short
    key = jax.random.key(2)
    step = jax.jit(train.make_train_step(loss_fn))
    s, ref_losses = state0, []
    idx, mask = sampler.indices(0, 15)
    for t in range(15):
        batch = {"image": arrays["image"][idx[t]], "label": arrays["label"][idx[t]],
                 "mask": mask[t]}
        s, m = step(s, batch, jax.random.fold_in(key, t))
        ref_losses.append(float(m["loss"]))
    run_steps = train.make_run_steps(train.make_train_step(loss_fn))
    dev = data.to_device(arrays)
    finals = []
    for chunk in (15, 4):
        st, out = train.fit(state0, run_steps, dev, sampler, 15, key, chunk_size=chunk,
                            progress=False)
        np.testing.assert_allclose(out.metrics["loss"], ref_losses, rtol=1e-6)
        finals.append(st.params)
    for a, b in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(finals[1])):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(finals[0]), jax.tree.leaves(s.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)


def test_unrolled_scan_equals_rolled_to_float_rounding_and_resumes_bit_identically():
    # unroll 4 over 15 steps: three unrolled iterations and a remainder of 3. XLA fuses the
    # unrolled body differently, so a parameter may differ in its last bit from the rolled
    # loop (measured: ~0.7% of them by 1 ulp); within one unroll setting, a run resumed with
    # the same chunk partition (what the experiments' checkpoints do) is bit-identical.
    arrays, state0, loss_fn = _setup(tx=optim.adam(1e-3))
    sampler = data.EpochSampler(64, 10, jax.random.key(1))
    key, dev = jax.random.key(2), data.to_device(arrays)
    runs = {u: train.make_run_steps(train.make_train_step(loss_fn), unroll=u) for u in (1, 4)}
    s1, r1 = train.fit(state0, runs[1], dev, sampler, 15, key, chunk_size=15, progress=False)
    s4, r4 = train.fit(state0, runs[4], dev, sampler, 15, key, chunk_size=15, progress=False)
    np.testing.assert_allclose(r4.metrics["loss"], r1.metrics["loss"], rtol=1e-6)
    for a, b in zip(jax.tree.leaves(s4.params), jax.tree.leaves(s1.params)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-6)

    full, out_full = train.fit(state0, runs[4], dev, sampler, 14, key, chunk_size=7,
                               progress=False)
    half, _ = train.fit(state0, runs[4], dev, sampler, 7, key, chunk_size=7, progress=False)
    resumed, out = train.fit(half, runs[4], dev, sampler, 14, key, chunk_size=7,
                             progress=False)
    np.testing.assert_array_equal(out.metrics["loss"], out_full.metrics["loss"][7:])
    for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(full)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_fit_resumes_from_state_step():
    arrays, state0, loss_fn = _setup()
    sampler = data.ReplacementSampler(64, 8, jax.random.key(1))
    run_steps = train.make_run_steps(train.make_train_step(loss_fn))
    dev, key = data.to_device(arrays), jax.random.key(5)
    full, _ = train.fit(state0, run_steps, dev, sampler, 12, key, chunk_size=12, progress=False)
    half, _ = train.fit(state0, run_steps, dev, sampler, 5, key, chunk_size=5, progress=False)
    resumed, out = train.fit(half, run_steps, dev, sampler, 12, key, chunk_size=7,
                             progress=False)
    assert int(resumed.step) == 12 and len(out.metrics["loss"]) == 7
    for a, b in zip(jax.tree.leaves(full.params), jax.tree.leaves(resumed.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_masked_mean_is_the_short_batch_mean():
    logits = jax.random.normal(jax.random.key(0), (6, 10))
    labels = jnp.arange(6) % 10
    mask = jnp.array([1, 1, 1, 1, 0, 0], bool)
    np.testing.assert_allclose(losses.cross_entropy(logits, labels, weights=mask),
                               losses.cross_entropy(logits[:4], labels[:4]), rtol=1e-6)


def test_seed_sgd_subtracts_the_running_sum():
    tx = optim.seed_sgd(0.5)
    params = {"w": jnp.zeros(2)}
    state = tx.init(params)
    u1, state = tx.update({"w": jnp.array([1.0, 2.0])}, state)
    u2, state = tx.update({"w": jnp.array([3.0, 4.0])}, state)
    np.testing.assert_allclose(u1["w"], [-0.5, -1.0])
    np.testing.assert_allclose(u2["w"], [-2.0, -3.0])  # -0.5 * (g1 + g2)
    # optax.sgd is the textbook rule (what --zero-grad uses).
    u, _ = optax.sgd(0.5).update({"w": jnp.array([3.0, 4.0])}, optax.sgd(0.5).init(params))
    np.testing.assert_allclose(u["w"], [-1.5, -2.0])


def test_evaluate_pads_the_last_batch():
    arrays, state, _ = _setup(n=25)
    pre = lambda x: data.flatten(x).astype(jnp.float32) / 255.0
    out = train.evaluate(state, arrays["image"], arrays["label"], pre, batch_size=10)
    direct = state.apply_fn({"params": state.params}, pre(arrays["image"]))
    np.testing.assert_allclose(out["logits"], direct, rtol=1e-5, atol=1e-5)
    assert out["logits"].shape == (25, 10)


def test_split_keys_is_init_data_train_in_that_order():
    keys = train.split_keys(7)
    expected = jax.random.split(jax.random.key(7), 3)
    for got, want in zip(keys, expected):
        np.testing.assert_array_equal(jax.random.key_data(got), jax.random.key_data(want))
    assert keys._fields == ("init", "data", "train")


def test_run_training_equals_fit_and_measures_compile_seconds_ahead_of_time():
    arrays, state0, loss_fn = _setup(tx=optim.adam(1e-3))
    sampler = data.EpochSampler(64, 10, jax.random.key(1))
    keys = train.split_keys(3)
    step = train.make_train_step(loss_fn)
    # One chunk: the compile time is measured (it used to be estimated, and 0.00 for one chunk).
    state, history = train.run_training(state0, step, arrays, sampler, 15, keys, QUIET,
                                        chunk_size=15)
    assert history.compile_seconds > 0 and history.train_seconds > 0
    assert history.resumed_step == 0 and len(history.metrics["loss"]) == 15
    ref, out = train.fit(state0, train.make_run_steps(step), data.to_device(arrays), sampler, 15,
                         keys.train, chunk_size=15, progress=False)
    np.testing.assert_array_equal(history.metrics["loss"], out.metrics["loss"])
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    # The same recipe again: the compiled loop is reused, nothing compiles.
    _, again = train.run_training(state0, step, arrays, sampler, 15, keys, QUIET,
                                  chunk_size=15)
    assert again.compile_seconds == 0.0


def test_a_shorter_last_chunk_does_not_compile_again_and_changes_nothing():
    arrays, state0, loss_fn = _setup()
    sampler = data.ReplacementSampler(64, 8, jax.random.key(1))
    keys = train.split_keys(0)
    step = train.make_train_step(loss_fn)
    seen = []
    state, history = train.run_training(state0, step, arrays, sampler, 30, keys, QUIET,
                                        chunk_size=20,
                                        on_chunk=lambda s, h: seen.append(int(s.step)))
    assert seen == [10, 20, 30]                        # 30 = 3 x 10, not 20 + 10
    assert len(train.make_run_steps(step)._executables) == 1
    ref, out = train.fit(state0, train.make_run_steps(train.make_train_step(loss_fn)),
                         data.to_device(arrays), sampler, 30, keys.train, chunk_size=20,
                         progress=False)
    np.testing.assert_array_equal(history.metrics["loss"], out.metrics["loss"])
    for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(ref.params)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_train_state_is_flax_train_state_with_apply_gradients():
    """Flax's TrainState, as its docs use it: create by keyword, `apply_gradients(grads=)`; the
    step an int32 array from the start (a Python int would make jit compile twice)."""
    from flax.training import train_state

    arrays, state, loss_fn = _setup()
    assert isinstance(state, train_state.TrainState)
    assert state.step.dtype == jnp.int32 and state.step.shape == () and state.model_state == {}
    batch = {"image": arrays["image"][:8], "label": arrays["label"][:8]}
    grads = jax.grad(lambda p: loss_fn(p, {}, batch, None)[0])(state.params)
    stepped = state.apply_gradients(grads=grads)
    updates, _ = state.tx.update(grads, state.opt_state, state.params)
    for a, b in zip(jax.tree.leaves(stepped.params),
                    jax.tree.leaves(optax.apply_updates(state.params, updates))):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert int(stepped.step) == 1 and stepped.step.dtype == jnp.int32


def test_a_batch_without_image_or_label_is_one_line_before_tracing():
    arrays, state, loss_fn = _setup()
    run_steps = train.make_run_steps(train.make_train_step(loss_fn))
    sampler = data.EpochSampler(64, 8, jax.random.key(1))
    bad = {"x": arrays["image"], "label": arrays["label"]}
    with pytest.raises(DataError, match=r"^data: the batch has no 'image': a batch is a dict "
                                        r"with 'image' and 'label' \(got keys: 'label', 'x'\)$"):
        train.fit(state, run_steps, bad, sampler, 2, jax.random.key(2), progress=False)
    with pytest.raises(DataError, match="the batch has no 'label'"):  # a call of the step itself
        jax.jit(train.make_train_step(loss_fn))(state, {"image": arrays["image"][:8]},
                                                jax.random.key(0))


def test_images_not_preprocessed_for_the_parameters_are_one_line():
    """Images that do not fit the model (no flatten): one line naming the shapes, not Flax's
    ScopeParamShapeError. A model that declares its input size says so itself (SeedMLP's
    ConfigError); for one that does not (a plain Dense), the train step says which parameter
    the images do not fit (DataError)."""
    from flax import linen

    from jaxnets.errors import ConfigError

    arrays, state, _ = _setup()
    loss_fn = train.classification_loss(state.apply_fn)  # preprocessing forgotten
    batch = {"image": arrays["image"][:8].astype(np.float32), "label": arrays["label"][:8]}
    with pytest.raises(ConfigError) as e:
        jax.jit(train.make_train_step(loss_fn))(state, batch, jax.random.key(0))
    assert str(e.value).count("\n") == 0 and "(8, 28, 28, 1)" in str(e.value)
    with pytest.raises(ConfigError, match=r"\(64, 28, 28, 1\)"):
        train.evaluate(state, arrays["image"], arrays["label"])

    dense = linen.Dense(10)
    params = dense.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    state = train.TrainState.create(apply_fn=dense.apply, params=params, tx=optax.sgd(1e-3))
    loss_fn = train.classification_loss(dense.apply)
    with pytest.raises(DataError) as e:
        jax.jit(train.make_train_step(loss_fn))(state, batch, jax.random.key(0))
    assert str(e.value).count("\n") == 0
    assert ("images of shape (8, 28, 28, 1) (after preprocessing) do not fit the model's "
            "parameters (parameter kernel has shape (784, 10)") in str(e.value)
