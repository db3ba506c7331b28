"""ResNet18 parity with PyTorch: a torchvision-layout reference written here (no CPU torchvision
exists), its random weights imported into jaxnets.resnet; logits, gradients, running statistics
and the seed's SGD step compared; state_dict import/export both ways; bad files rejected."""

from __future__ import annotations

import json
import os
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn as tnn
import torch.nn.functional as F

from experiments import resnet_step
from jaxnets import layers as L
from jaxnets import models, resnet, torch_io
from jaxnets.errors import CheckpointError, ConfigError
from jaxnets.options import RunOptions
from reference import seeds

RefResNet18 = seeds.ResNet18  # torchvision's resnet18, same module names and init


def _numpy(sd) -> dict[str, np.ndarray]:
    return {k: v.detach().clone().numpy() for k, v in sd.items()}


def _close(ours: np.ndarray, ref: np.ndarray, rtol: float, atol_scale: float) -> bool:
    """|a - b| <= rtol * |b| + atol_scale * max|b|: relative, atol scaled to the tensor."""
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    scale = np.max(np.abs(ref)) if ref.size else 0.0
    return ours.shape == ref.shape and bool(
        np.all(np.abs(ours - ref) <= rtol * np.abs(ref) + atol_scale * scale))


def _assert_dicts_close(ours: dict, ref: dict, keys, rtol: float = 1e-4,
                        atol_scale: float | None = None) -> None:
    atol_scale = rtol if atol_scale is None else atol_scale
    bad = [k for k in keys if not _close(ours[k], ref[k], rtol, atol_scale)]
    assert not bad, f"{len(bad)} tensors differ, e.g. {bad[:5]}"


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    """The seed's step run in PyTorch on the experiment's own (--seed 0) data."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = RefResNet18()
        with torch.no_grad():  # non-trivial BatchNorm weights and statistics: every key counts
            for m in model.modules():
                if isinstance(m, tnn.BatchNorm2d):
                    m.weight.uniform_(0.5, 1.5)
                    m.bias.normal_(0.0, 0.1)
                    m.running_mean.normal_(0.0, 0.1)
                    m.running_var.uniform_(0.5, 1.5)
    batch = jax.device_get(resnet_step.make_batch(resnet_step.Config()))
    x = torch.from_numpy(np.ascontiguousarray(batch["image"].transpose(0, 3, 1, 2)))
    labels = torch.from_numpy(np.array(batch["label"]))
    out = {"image": batch["image"], "label": batch["label"], "sd0": _numpy(model.state_dict())}
    path = str(tmp_path_factory.mktemp("resnet") / "ref.pth")
    torch.save(model.state_dict(), path)
    out["pth"] = path

    model.eval()
    with torch.no_grad():
        out["logits_eval"] = model(x).numpy()
    model.train()  # the seed's model: a fresh torchvision module is in training mode
    prediction, loss = seeds.resnet18_seed_step(model, x, labels)
    out["logits_train"] = prediction.detach().numpy()
    out["loss_before"] = loss.item()
    # SGD leaves .grad as backward left it: these are the step's gradients
    out["grads"] = {n: p.grad.detach().clone().numpy() for n, p in model.named_parameters()}
    out["sd1"] = _numpy(model.state_dict())  # post-step weights + running stats of the forward
    with torch.no_grad():
        out["loss_after"] = float((model(x) - labels).sum())
    return out


def test_state_dict_keys_shapes_and_param_count_match_torchvision():
    template = resnet._template(1000)
    ours = resnet.resnet18_to_state_dict(template)
    theirs = RefResNet18().state_dict()
    assert sorted(ours) == sorted(theirs)
    assert {k: tuple(v.shape) for k, v in ours.items()} == \
        {k: tuple(v.shape) for k, v in theirs.items()}
    assert models.count_params(template["params"]) == resnet.NUM_PARAMS_RESNET18 == \
        sum(p.numel() for p in RefResNet18().parameters())
    assert resnet.torch_rename("layer2_0.downsample_1") == "layer2.0.downsample.1"


def test_init_is_torchvision_kaiming_normal_fan_out():
    kernel = resnet.Conv(256, 3).init(jax.random.key(1), jnp.zeros((1, 4, 4, 128)))["params"]["kernel"]
    kernel = np.asarray(kernel)
    std = np.sqrt(2.0 / (256 * 3 * 3))  # fan_out = out_channels * kh * kw
    assert abs(kernel.std() / std - 1) < 0.02 and abs(kernel.mean()) < 0.02 * std
    assert np.abs(kernel).max() > 4 * std  # untruncated, as torch's normal_ (not cut at 2 std)
    bn = resnet.BatchNorm2d().init(jax.random.key(2), jnp.zeros((2, 3, 3, 5)))
    assert np.all(np.asarray(bn["params"]["scale"]) == 1) and not np.any(bn["params"]["bias"])
    assert np.all(np.asarray(bn["batch_stats"]["var"]) == 1) and not np.any(bn["batch_stats"]["mean"])


def test_batchnorm_matches_torch_momentum_and_unbiased_running_var():
    rng = np.random.default_rng(0)
    xs = [rng.normal(2.0, 3.0, (4, 5, 5, 3)).astype(np.float32) for _ in range(2)]
    tbn = tnn.BatchNorm2d(3)
    with torch.no_grad():
        tbn.weight.copy_(torch.tensor([0.5, 1.0, 2.0]))
        tbn.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    bn = resnet.BatchNorm2d()
    variables = bn.init(jax.random.key(0), xs[0])
    variables = {"params": {"scale": jnp.array([0.5, 1.0, 2.0]), "bias": jnp.array([0.1, -0.2, 0.3])},
                 "batch_stats": variables["batch_stats"]}
    for x in xs:  # two training steps: the running statistics compound as in PyTorch
        y, new = bn.apply(variables, x, train=True, mutable=["batch_stats"])
        variables = {**variables, **new}
        ty = tbn(torch.from_numpy(x.transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
        np.testing.assert_allclose(y, ty, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(variables["batch_stats"]["mean"], tbn.running_mean, rtol=1e-5)
    np.testing.assert_allclose(variables["batch_stats"]["var"], tbn.running_var, rtol=1e-5)
    tbn.eval()
    ty = tbn(torch.from_numpy(xs[0].transpose(0, 3, 1, 2))).detach().numpy().transpose(0, 2, 3, 1)
    np.testing.assert_allclose(bn.apply(variables, xs[0]), ty, rtol=1e-5, atol=1e-5)
    with pytest.raises(ConfigError, match="more than 1 value per channel"):
        bn.apply(variables, xs[0][:1, :1, :1], train=True, mutable=["batch_stats"])


def test_max_pool_pads_with_minus_inf_like_torch():
    x = -np.abs(np.random.default_rng(1).normal(size=(1, 7, 7, 2))).astype(np.float32) - 1.0
    ours = np.asarray(L.max_pool2d(jnp.asarray(x), 3, 2, 1))
    theirs = F.max_pool2d(torch.from_numpy(x.transpose(0, 3, 1, 2)), 3, 2, 1).numpy()
    np.testing.assert_array_equal(ours, theirs.transpose(0, 2, 3, 1))


@pytest.mark.slow
def test_logits_grads_and_running_stats_match_pytorch(ref):
    variables = resnet.resnet18_from_state_dict(torch_io.load(ref["pth"]), source=ref["pth"])
    model = resnet.ResNet18()

    @jax.jit
    def forward_and_grads(variables, x, labels):
        def loss_fn(params):
            logits, new = model.apply({"params": params, "batch_stats": variables["batch_stats"]},
                                      x, train=True, mutable=["batch_stats"])
            return jnp.sum(logits - labels), (logits, new)

        (loss, (logits, new)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
            variables["params"])
        return loss, logits, new, grads, model.apply(variables, x, train=False)

    loss, logits, new_stats, grads, logits_eval = forward_and_grads(
        variables, ref["image"], ref["label"])
    np.testing.assert_allclose(logits, ref["logits_train"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(logits_eval, ref["logits_eval"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(float(loss), ref["loss_before"], rtol=1e-5)
    ours = resnet.resnet18_to_state_dict({"params": grads, **new_stats})
    # Training-mode BatchNorm's backward subtracts per-channel means (layer4 has 4 values per
    # channel at 64x64): float32 cancellation leaves ~1e-4 of a tensor's largest gradient
    # (measured 1.0e-4 worst, layer1.1.bn1.bias). A real mismatch (biased variance, wrong
    # padding or momentum, a transposed kernel) is off by percents.
    _assert_dicts_close(ours, ref["grads"], ref["grads"], rtol=1e-4, atol_scale=5e-4)
    stats = [k for k in ref["sd1"] if k.endswith(("running_mean", "running_var"))]
    assert len(stats) == 2 * 20
    _assert_dicts_close(ours, ref["sd1"], stats, rtol=1e-5)


@pytest.mark.slow
def test_experiment_step_matches_pytorch_and_exports_loadable_state_dict(ref, tmp_path, capsys):
    export = str(tmp_path / "after.safetensors")
    rc = resnet_step.main(["--weights", ref["pth"], "--export", export,
                           "--out", str(tmp_path), "--seed", "0"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "loss before the step" in printed and "loss after the step" in printed
    with open(tmp_path / "metrics.json") as f:
        metrics = json.load(f)
    assert metrics["num_params"] == 11_689_512 and metrics["batchnorm_mode"] == "train"
    np.testing.assert_allclose(metrics["loss_before"], ref["loss_before"], rtol=1e-5)
    np.testing.assert_allclose(metrics["loss_after"], ref["loss_after"], rtol=1e-5)
    assert metrics["loss_after"] < metrics["loss_before"]  # a descent step on this loss

    from safetensors.torch import load_file

    after = RefResNet18()
    result = after.load_state_dict(load_file(export), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    moved = [k for k in ref["sd1"] if not np.array_equal(ref["sd1"][k], ref["sd0"][k])]
    assert len(moved) > 100  # weights and running stats did change in the step
    # Compare the change each tensor took (lr * momentum buffer for weights, the running-stat
    # update for buffers) at the gradients' tolerance, not the weights': conv1.weight moves by
    # up to ~2 (gradients ~200), so a weights-relative check would hide gradient errors.
    ours = _numpy(after.state_dict())
    ours_delta = {k: ours[k].astype(np.float64) - ref["sd0"][k] for k in ref["sd1"]}
    ref_delta = {k: ref["sd1"][k].astype(np.float64) - ref["sd0"][k] for k in ref["sd1"]}
    _assert_dicts_close(ours_delta, ref_delta, ref["sd1"], rtol=1e-4, atol_scale=5e-4)
    assert after.bn1.num_batches_tracked.item() == 1  # one training-mode forward, as in torch


def test_export_round_trip_into_torch_is_exact(ref, tmp_path):
    variables = resnet.resnet18_from_state_dict(ref["sd0"])
    path = torch_io.save(str(tmp_path / "r18.safetensors"), resnet.resnet18_to_state_dict(variables))
    from safetensors.torch import load_file

    model = RefResNet18()
    model.load_state_dict(load_file(path), strict=True)
    for k, v in model.state_dict().items():
        if not k.endswith("num_batches_tracked"):
            np.testing.assert_array_equal(v.numpy(), ref["sd0"][k], err_msg=k)


def test_safetensors_import_works_without_torch(ref, tmp_path, monkeypatch):
    path = torch_io.save(str(tmp_path / "r18.safetensors"), ref["sd0"])
    pth = str(tmp_path / "r18.pth")
    torch.save({k: torch.from_numpy(v) for k, v in ref["sd0"].items()}, pth)
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    variables = resnet.resnet18_from_state_dict(torch_io.load(path), source=path)
    np.testing.assert_array_equal(
        np.asarray(variables["params"]["layer2_0"]["downsample_0"]["kernel"]),
        ref["sd0"]["layer2.0.downsample.0.weight"].transpose(2, 3, 1, 0))
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["bn1"]["var"]),
                                  ref["sd0"]["bn1.running_var"])
    with pytest.raises(CheckpointError, match="needs torch"):
        torch_io.load(pth)


def test_mismatched_state_dicts_raise_checkpoint_error(ref):
    lenet = {"conv1.weight": np.zeros((6, 1, 5, 5), np.float32),
             "fc1.weight": np.zeros((120, 400), np.float32)}
    with pytest.raises(CheckpointError, match="missing key 'bn1.bias'"):
        resnet.resnet18_from_state_dict(lenet, source="lenet.pth")
    wrong_shape = {**ref["sd0"], "fc.weight": np.zeros((10, 512), np.float32)}
    with pytest.raises(CheckpointError, match=r"'fc.weight' has shape \(10, 512\)"):
        resnet.resnet18_from_state_dict(wrong_shape)
    extra = {**ref["sd0"], "layer5.0.conv1.weight": np.zeros((1,), np.float32)}
    with pytest.raises(CheckpointError, match="unexpected keys"):
        resnet.resnet18_from_state_dict(extra)


def test_cli_bad_inputs_are_one_line_errors(tmp_path, capsys, monkeypatch):
    # --pretrained offline: a refused loopback port stands for "no internet" (no real network)
    monkeypatch.setattr(resnet, "PRETRAINED_URL", "http://127.0.0.1:1/resnet18-f37072fd.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    corrupt = tmp_path / "bad.safetensors"
    corrupt.write_bytes(b"not a safetensors file")
    bad_pth = tmp_path / "bad.pth"
    bad_pth.write_bytes(b"garbage")
    nested = str(tmp_path / "checkpoint.pth")  # a training checkpoint, not a state_dict
    torch.save({"model": RefResNet18().state_dict(), "epoch": 3}, nested)
    cases = [(["--weights", str(corrupt)], "corrupt or not a safetensors file"),
             (["--weights", str(bad_pth)], "not a readable PyTorch state_dict"),
             (["--weights", nested], "entry 'model' is not a tensor"),
             (["--pretrained"], ("--pretrained: could not download http://127.0.0.1:1/"
                                 "resnet18-f37072fd.pth (Connection refused); download it "
                                 "where there is internet and pass the file instead "
                                 "(--weights FILE)")),
             (["--export", str(tmp_path / "x.pth")], "must end in .safetensors"),
             (["--size", "32"], "training-mode BatchNorm needs more")]
    for argv, message in cases:
        assert resnet_step.main(argv + ["--out", str(tmp_path)]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert message in err and "\n" not in err, err
    assert not os.path.exists(tmp_path / "metrics.json")
    with pytest.raises(ConfigError, match="looks like NCHW"):
        resnet.ResNet18().apply({"params": {}}, jnp.zeros((1, 3, 64, 64)))


def _assert_state_dicts_equal(ours: dict, theirs: dict) -> None:
    """Same keys, shapes (0-d stays 0-d), dtypes and bits."""
    assert sorted(ours) == sorted(theirs)
    for k, value in theirs.items():
        a, b = np.asarray(ours[k]), np.asarray(value)
        assert a.shape == b.shape and a.dtype == b.dtype, (k, a.shape, b.shape, a.dtype, b.dtype)
        np.testing.assert_array_equal(a, b, err_msg=k)


@pytest.mark.parametrize("writer", ["jaxnets", "torch_safetensors", "torch_pth"])
def test_state_dict_round_trips_keep_every_array_and_0d_counters(ref, tmp_path, writer):
    """Written by us or by torch, read by us and by torch (strict): every array bit-exact,
    num_batches_tracked a 0-d int64 (torch's load_state_dict silently accepts [1], so the
    shape is asserted, not left to torch)."""
    from safetensors.torch import load_file, save_file

    sd = {k: (np.asarray(7, np.int64) if k.endswith("num_batches_tracked") else v)
          for k, v in ref["sd0"].items()}
    assert sd["bn1.num_batches_tracked"].shape == ()
    if writer == "jaxnets":
        variables = resnet.resnet18_from_state_dict(sd)
        path = torch_io.save(str(tmp_path / "r18.safetensors"),
                             resnet.resnet18_to_state_dict(variables, num_batches_tracked=7))
    elif writer == "torch_safetensors":
        path = str(tmp_path / "r18.safetensors")
        save_file({k: torch.from_numpy(np.array(v, order="C")) for k, v in sd.items()}, path)
    else:
        path = str(tmp_path / "r18.pth")
        torch.save({k: torch.from_numpy(np.array(v, order="C")) for k, v in sd.items()}, path)
    read = torch_io.load(path)
    _assert_state_dicts_equal(read, sd)
    assert resnet.num_batches_tracked(read) == 7
    # into torch, strict, and back out unchanged
    model = RefResNet18()
    loaded = load_file(path) if path.endswith(".safetensors") else torch.load(
        path, weights_only=True)
    model.load_state_dict(loaded, strict=True)
    _assert_state_dicts_equal(_numpy(model.state_dict()), sd)
    # and through jaxnets' import and export again
    again = resnet.resnet18_to_state_dict(resnet.resnet18_from_state_dict(read, source=path),
                                          resnet.num_batches_tracked(read))
    _assert_state_dicts_equal(again, sd)


@pytest.mark.slow
def test_experiment_reimports_its_own_export(ref, tmp_path):
    """resnet_step --export X, then --weights X (the 0-d num_batches_tracked made this a
    TypeError): the second run starts from the first one's weights and counts on from 1."""
    first, second = str(tmp_path / "first.safetensors"), str(tmp_path / "second.safetensors")
    assert resnet_step.main(["--weights", ref["pth"], "--export", first, "--quiet",
                             "--out", str(tmp_path / "a")]) == 0
    assert resnet_step.main(["--weights", first, "--export", second, "--quiet",
                             "--out", str(tmp_path / "b")]) == 0
    with open(tmp_path / "a" / "metrics.json") as f:
        loss_after_first = json.load(f)["loss_after"]
    with open(tmp_path / "b" / "metrics.json") as f:
        loss_before_second = json.load(f)["loss_before"]
    # the second run's first forward is the first run's "after" forward on the same data
    assert loss_before_second == loss_after_first
    assert torch_io.load(second)["bn1.num_batches_tracked"].shape == ()
    assert resnet.num_batches_tracked(torch_io.load(second)) == 2


def test_old_exports_with_a_shape_1_counter_still_load():
    assert resnet.num_batches_tracked({"bn1.num_batches_tracked": np.array([3])}) == 3
    with pytest.raises(CheckpointError, match="num_batches_tracked has shape"):
        resnet.num_batches_tracked({"bn1.num_batches_tracked": np.array([3, 4])})


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_bfloat16_state_dicts_load_exactly(ref, tmp_path, suffix):
    """A bf16 checkpoint (numpy has no bfloat16; torch's .numpy() raised TypeError) loads as
    ml_dtypes.bfloat16 bit for bit and imports as the model's float32."""
    from safetensors.torch import save_file

    sd = {k: torch.from_numpy(v) for k, v in ref["sd0"].items()}
    sd = {k: (v.to(torch.bfloat16) if v.is_floating_point() else v) for k, v in sd.items()}
    path = str(tmp_path / f"bf16{suffix}")
    if suffix == ".pth":
        torch.save(sd, path)
    else:
        save_file(sd, path)
    read = torch_io.load(path)
    assert str(read["conv1.weight"].dtype) == "bfloat16"
    np.testing.assert_array_equal(read["conv1.weight"].astype(np.float32),
                                  sd["conv1.weight"].float().numpy())
    variables = resnet.resnet18_from_state_dict(read, source=path)
    assert variables["params"]["conv1"]["kernel"].dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(variables["batch_stats"]["bn1"]["var"]),
                                  sd["bn1.running_var"].float().numpy())


def _serve(directory: str):
    """A loopback HTTP server for `directory` (no internet involved); (base URL, server)."""
    import functools
    import http.server
    import threading

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(Quiet, directory=directory)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_address[1]}", server


def test_fetch_pretrained_checks_the_hash_in_the_name_and_caches(tmp_path):
    import hashlib

    served = tmp_path / "served"
    served.mkdir()
    payload = os.urandom(3 << 20)  # several reads
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    (served / f"resnet18-{prefix}.pth").write_bytes(payload)
    (served / "resnet18-00000000.pth").write_bytes(payload)  # published hash does not match
    base, server = _serve(str(served))
    cache = tmp_path / "cache"
    try:
        path = resnet.fetch_pretrained(f"{base}/resnet18-{prefix}.pth", str(cache), timeout=10)
        with open(path, "rb") as f:
            assert f.read() == payload
        assert os.listdir(cache) == [f"resnet18-{prefix}.pth"]
        server.shutdown()  # cached: no second download needed
        assert resnet.fetch_pretrained(f"{base}/resnet18-{prefix}.pth", str(cache)) == path
        base, server = _serve(str(served))
        with pytest.raises(CheckpointError, match="sha256 .* does not start with 00000000"):
            resnet.fetch_pretrained(f"{base}/resnet18-00000000.pth", str(cache), timeout=10)
        with pytest.raises(CheckpointError, match=r"could not download .*\(HTTP 404 File not found\)"):
            resnet.fetch_pretrained(f"{base}/resnet18-12345678.pth", str(cache), timeout=10)
        assert os.listdir(cache) == [f"resnet18-{prefix}.pth"]  # nothing partial left behind
    finally:
        server.shutdown()


def test_pretrained_downloads_through_the_experiment(ref, tmp_path, monkeypatch):
    """--pretrained fetches the (here: loopback-served) file and starts from it, like --weights."""
    import hashlib
    import shutil

    served = tmp_path / "served"
    served.mkdir()
    with open(ref["pth"], "rb") as f:
        prefix = hashlib.sha256(f.read()).hexdigest()[:8]
    shutil.copy(ref["pth"], served / f"resnet18-{prefix}.pth")
    base, server = _serve(str(served))
    monkeypatch.setattr(resnet, "PRETRAINED_URL", f"{base}/resnet18-{prefix}.pth")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    try:
        metrics = resnet_step.run(resnet_step.Config(
            pretrained=True, options=RunOptions(out=str(tmp_path / "o"), quiet=True)))
    finally:
        server.shutdown()
    assert os.path.isfile(tmp_path / "torch_home" / "hub" / "checkpoints" /
                          f"resnet18-{prefix}.pth")
    np.testing.assert_allclose(metrics["loss_before"], ref["loss_before"], rtol=1e-5)
