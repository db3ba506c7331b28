"""The tensor tour against PyTorch: each section (a JAX cell of docs/lessons/02_tensors.md or
10_save_load.md, run as `python -m experiments.tensors` runs it) against torch, values and dtypes.

Where JAX's default dtype differs (64-bit types off), the check is the documented mapping
`jax_dtype_for`. Random snippets are checked for shape, dtype and distribution.
"""

import ast
import json
import os
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.stats
import torch

from experiments import tensors as T
from experiments import tour
from jaxnets.errors import ConfigError
from jaxnets.options import RunOptions


def values(name, seed=0, out=None):
    vals, text = tour.call(tour.find("tensors", name), seed, out)
    assert text.strip()
    return vals


def assert_same(ours, theirs: torch.Tensor, rtol=1e-6):
    """Equal values, and our dtype is what the tour documents for torch's dtype."""
    ours = np.asarray(ours)
    assert ours.shape == tuple(theirs.shape)
    assert str(ours.dtype) == T.jax_dtype_for(str(theirs.dtype))
    np.testing.assert_allclose(ours, theirs.detach().numpy(), rtol=rtol, atol=1e-7)


def t(x):
    """Our array as a torch tensor (same dtype, copied)."""
    return torch.from_numpy(np.array(x))


def test_dtype_mapping_is_the_documented_one():
    assert T.jax_dtype_for("torch.int64") == "int32"
    assert T.jax_dtype_for("float64") == "float32"
    assert T.jax_dtype_for("torch.float32") == "float32"
    assert T.jax_dtype_for("int32") == "int32"


def test_tensor_infers_dtypes_like_torch():
    v = values("tensor")
    assert_same(v["x_data"], torch.tensor([[1, 2], [3, 4]]))
    assert_same(v["x"], torch.tensor([5.5, 3]))
    assert v["x_data"].dtype == jnp.int32  # torch: int64


def test_from_numpy():
    v = values("from_numpy")
    assert_same(v["x_np"], torch.from_numpy(np.array([[1, 2], [3, 4]])))
    theirs = torch.from_numpy(np.ones(5))
    assert theirs.dtype == torch.float64
    assert_same(v["ones"], theirs)


def test_empty_has_the_shape_and_dtype_and_is_zeros():
    v = values("empty")
    theirs = torch.empty(5, 3)
    assert v["x"].shape == tuple(theirs.shape) and str(v["x"].dtype) == "float32"
    assert not np.asarray(v["x"]).any()


def test_random_shapes_dtypes_and_ranges():
    v = values("random")
    assert v["rand"].shape == tuple(torch.rand(5, 3).shape) and v["rand"].dtype == jnp.float32
    assert v["randn"].shape == (5, 3) and v["randn"].dtype == jnp.float32
    x = torch.from_numpy(np.ones(5))  # seed 002's x when it calls randn_like (float64)
    like = torch.randn_like(x)
    assert v["randn_like"].shape == tuple(like.shape)
    assert str(v["randn_like"].dtype) == T.jax_dtype_for(str(like.dtype))
    assert 0 <= float(v["rand"].min()) and float(v["rand"].max()) < 1
    # Separate keys, separate numbers.
    assert not np.allclose(np.ravel(v["randn"])[:5], v["randn_like"])


def test_random_distributions_match_torch():
    """Pooled over 60 seeds (fixed keys, so deterministic): U[0,1) and N(0,1), like torch's."""
    runs = [values("random", seed) for seed in range(60)]
    rand = np.concatenate([np.ravel(v["rand"]) for v in runs])
    randn = np.concatenate([np.ravel(v["randn"]) for v in runs])
    gen = torch.Generator().manual_seed(0)
    torch_rand = torch.rand(rand.size, generator=gen).numpy()
    torch_randn = torch.randn(randn.size, generator=gen).numpy()
    assert scipy.stats.kstest(rand, "uniform").pvalue > 1e-3
    assert scipy.stats.kstest(randn, "norm").pvalue > 1e-3
    assert scipy.stats.ks_2samp(rand, torch_rand).pvalue > 1e-3
    assert scipy.stats.ks_2samp(randn, torch_randn).pvalue > 1e-3
    assert abs(randn.mean()) < 0.1 and abs(randn.std() - 1) < 0.1
    # Seeds matter: different seeds, different numbers; the same seed, the same numbers.
    assert not np.array_equal(runs[0]["randn"], runs[1]["randn"])
    np.testing.assert_array_equal(runs[3]["randn"], values("random", 3)["randn"])


def test_factories_long():
    v = values("factories")
    assert_same(v["zeros"], torch.zeros(5, 3, dtype=torch.long))
    assert_same(v["ones"], torch.ones(5, 3, dtype=torch.long))
    assert_same(v["eye"], torch.eye(5, 3, dtype=torch.long))


def test_attributes():
    v = values("attributes")
    theirs = torch.rand(5, 3)
    assert v["shape"] == tuple(theirs.size()) == tuple(theirs.shape)
    assert v["numel"] == theirs.numel()  # JAX's .size is torch's numel()
    assert v["dtype"] == str(theirs.dtype).removeprefix("torch.")
    assert "cpu" in v["device"].lower() or jax.default_backend() != "cpu"


def test_indexing():
    v = values("indexing")
    points = torch.tensor(T.POINTS)
    assert_same(v["points_0_1"], points[0, 1])
    assert_same(v["points_1_"], points[1:])
    assert_same(v["points_1_0"], points[1:, 0])
    assert_same(v["points_none"], points[None])
    assert_same(v["unsqueeze"], points.unsqueeze(0))
    edited = points.clone()
    edited[0, 0] = 9.0
    assert_same(v["set"], edited)
    assert_same(v["points"], torch.tensor(T.POINTS))  # .at[].set left the original alone


def blitz_tensor():
    tensor = torch.ones(4, 4)
    tensor[:, 1] = 0
    return tensor


def test_cat_mul_matmul():
    tensor = blitz_tensor()
    cat, mul, mm = values("cat"), values("mul"), values("matmul")
    assert_same(cat["tensor"], tensor)
    assert_same(cat["t1"], torch.cat([tensor, tensor, tensor], dim=1))
    assert_same(mul["mul"], tensor.mul(tensor))
    assert_same(mul["star"], tensor * tensor)
    assert_same(mm["matmul"], tensor.matmul(tensor.T))
    assert_same(mm["at"], tensor @ tensor.T)
    a, b, v = t(mm["a"]), t(mm["b"]), t(mm["v"])
    assert_same(mm["mm"], torch.mm(a, b))
    assert_same(mm["mv"], torch.mv(a, v))


def test_abs_clamp_item():
    v = values("abs")
    assert_same(v["abs"], torch.abs(t(v["x"])))
    v = values("clamp")
    assert_same(v["clamp"], torch.clamp(t(v["x"]), min=0, max=1))
    assert float(np.min(v["clamp"])) == 0.0 and float(np.max(v["clamp"])) == 1.0
    v = values("item")
    assert v["item"] == t(v["x"]).item()
    assert isinstance(v["item"], float)


def test_add_out_and_in_place():
    v = values("add")
    x, y = t(v["x"]), t(v["y"])
    assert_same(v["plus"], x + y)
    assert_same(v["add"], torch.add(x, y))
    result = torch.empty(5, 3)
    torch.add(x, y, out=result)
    assert_same(v["out"], result)
    y.add_(x)
    assert_same(v["add_"], y)
    assert_same(v["y"], torch.from_numpy(np.array(v["y"])))  # our y was not changed in place


def test_arithmetic():
    v = values("arithmetic")
    x, y = t(v["x"]), t(v["y"])
    assert_same(v["sub"], torch.sub(x, y))
    assert_same(v["div"], torch.div(x, y))
    assert_same(v["pow"], torch.pow(x, 2))
    assert_same(v["pow_t"], torch.pow(x, y))


def test_view():
    v = values("view")
    x = t(v["x"])
    assert_same(v["y"], x.view(16))
    assert_same(v["z"], x.view(-1, 8))
    assert [tuple(s) for s in v["shapes"]] == [(4, 4), (16,), (2, 8)]


def test_numpy_bridge_shares_nothing_mutable():
    """torch shares memory with numpy both ways; the tour documents that JAX does not."""
    v = values("numpy")
    a = torch.ones(5)
    b = a.numpy()
    a.add_(1)
    np.testing.assert_array_equal(b, 2 * np.ones(5))        # torch: shared
    np.testing.assert_array_equal(v["b"], np.ones(5))       # JAX: b kept the old value
    assert v["b_writeable"] is False
    np.testing.assert_array_equal(v["writable_copy"], a.numpy())
    n = np.ones(5)
    tt = torch.from_numpy(n)
    np.add(n, 1, out=n)
    np.testing.assert_array_equal(tt.numpy(), 2 * np.ones(5))   # torch: shared
    np.testing.assert_array_equal(v["t"], np.ones(5))          # JAX: copied
    np.testing.assert_array_equal(v["n"], 2 * np.ones(5))


def test_device_runs_without_an_accelerator():
    v = values("device")
    assert v["available"] == any(d.platform != "cpu" for d in jax.devices())
    assert_same(v["points_cpu"], 2 * torch.tensor(T.POINTS))
    assert "cpu" in v["points_cpu_device"].lower()
    assert v["doubled_device"] == v["points_gpu_device"] == v["created_device"]


def test_named_tensors_by_einsum():
    v = values("named")
    weights = torch.tensor(T.CHANNEL_WEIGHTS)
    assert_same(v["weights"], weights)
    assert v["weights_named"][1] == ("channels",)
    np.testing.assert_array_equal(v["weights_named"][0], v["weights"])
    img, batch = t(v["img_t"]), t(v["batch_t"])
    # What weights_named.align_as(img_named) did: weights as (channels, 1, 1), summed over channels.
    aligned = weights.unsqueeze(-1).unsqueeze_(-1)
    assert_same(v["gray_broadcast"], (img * aligned).sum(-3))
    assert_same(v["gray"], (img * aligned).sum(-3), rtol=1e-5)
    assert_same(v["gray"], torch.einsum("...chw,c->...hw", img, weights), rtol=1e-5)
    assert_same(v["batch_gray"], (batch * aligned).sum(-3), rtol=1e-5)


def test_named_weights_are_the_seeds_printed_out_7():
    """seed 003 Out[7]: tensor([0.2126, 0.7152, 0.0722], names=('channels',))."""
    printed = T.TUTORIAL["weights_named (seed 003, In[7]/Out[7])"]
    numbers = [float(n) for n in re.search(r"\[(.*?)\]", printed).group(1).split(",")]
    names = re.search(r"names=\((.*?)\)", printed).group(1)
    v = values("named")
    np.testing.assert_array_equal(np.round(np.asarray(v["weights"], np.float64), 4), numbers)
    assert v["weights_named"][1] == ast.literal_eval(f"({names})")


def test_save_and_load_without_pickle(tmp_path):
    v = values("save", out=str(tmp_path))
    path = tmp_path / "ourpoints.npy"
    assert v["path"] == str(path) and path.exists()
    points = torch.tensor(T.POINTS)
    assert_same(v["loaded_path"], points)
    assert_same(v["loaded_file"], points)
    # The file is plain .npy: numpy reads it with pickle refused, torch takes it from there.
    with open(path, "rb") as f:
        assert_same(np.load(f, allow_pickle=False), points)
    assert_same(v["points"], torch.from_numpy(np.load(path, allow_pickle=False)))


def test_section_values_do_not_depend_on_which_sections_run(tmp_path):
    alone = T.run(T.Config(section="abs",
                           options=RunOptions(out=str(tmp_path / "a"), progress=False)))
    full = T.run(T.Config(options=RunOptions(out=str(tmp_path / "b"), progress=False)))
    assert list(alone) == ["abs"] and list(full) == [s.name for s in tour.load("tensors")]
    np.testing.assert_array_equal(alone["abs"]["x"], full["abs"]["x"])
    with open(tmp_path / "b" / "metrics.json") as f:
        saved = json.load(f)
    assert saved["experiment"] == "tensors" and set(saved["sections"]) == set(full)
    np.testing.assert_allclose(saved["sections"]["tensor"]["x"], [5.5, 3.0])


def test_cli_list_section_and_bad_section(tmp_path, capsys):
    assert T.main(["--list", "--out", str(tmp_path)]) == 0
    listed = capsys.readouterr().out
    assert all(f"{s.name}  " in listed and s.where in listed for s in tour.load("tensors"))
    assert "docs/lessons/02_tensors.md#joining" in listed
    assert not os.path.exists(tmp_path / "metrics.json")
    assert T.main(["--section", "cat", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "## [cat] PyTorch:\n##     # (not in the seed: the blitz's code for torch.cat)" in out
    assert "[add]" not in out and "## explained in docs/lessons/02_tensors.md#joining" in out
    assert T.main(["--section", "nope", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--section: unknown section 'nope'" in err and len(err.strip().splitlines()) == 1
    with pytest.raises(ConfigError, match="section: unknown section"):
        T.Config(section="nope")


def test_save_model_safetensors_load_into_torch_and_whole_model_pickles_are_refused(tmp_path):
    """The section's file is a state_dict torch's Sequential loads (same outputs); the seed's
    whole-model torch.save/torch.load is refused by torch.load's default (weights_only=True)."""
    from safetensors.torch import load_file

    v = values("save_model", out=str(tmp_path))
    assert v["path"] == str(tmp_path / "model.safetensors") and v["outputs_equal"] is True
    assert values("pickle", out=str(tmp_path))["pickle_names_print"] is True
    with open(tmp_path / "model.json") as f:
        assert json.load(f) == v["config"] == {"in_features": 1000, "hidden": 100, "out": 10}
    net = torch.nn.Sequential(torch.nn.Linear(1000, 100), torch.nn.ReLU(),
                              torch.nn.Linear(100, 10))
    net.load_state_dict(load_file(v["path"]))   # strict: every key and shape matches
    with torch.no_grad():
        theirs = net(t(v["x"]))
    np.testing.assert_allclose(v["y"], theirs.numpy(), rtol=1e-5, atol=1e-6)
    whole = tmp_path / "whole_model.pt"
    torch.save(net, whole)                       # the seed's torch.save(model, path)
    with pytest.raises(Exception, match="weights_only"):
        torch.load(whole)                        # the seed's model = torch.load(path)
