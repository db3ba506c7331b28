"""PyTorch `state_dict` exchange: Flax variables <-> {torch key: array} in PyTorch's layouts.

Rules (the same for every model, so LeNet, the linear classifier and ResNet18 share them):
- a module path `a/b` becomes the dotted prefix `a.b` (`rename` maps prefixes that cannot be
  spelled as Flax names, e.g. ResNet's `layer1_0` -> `layer1.0`);
- `kernel` -> `weight`, transposed to PyTorch's layout: Linear [in, out] -> [out, in], Conv
  HWIO -> OIHW;
- `bias` -> `bias`; BatchNorm `scale` -> `weight`, and its batch_stats `mean`/`var` ->
  `running_mean`/`running_var` (PyTorch's `num_batches_tracked` is written as 0 on export and
  ignored on import);
- any other parameter (seed 000's raw `w1`) keeps its name and layout.
Files: safetensors (no pickle) both ways; PyTorch `.pth` is read with
`torch.load(weights_only=True)` when torch is installed. Shapes are kept exactly (0-d arrays
such as a counter stay 0-d); bfloat16 arrays come back as `ml_dtypes.bfloat16` from either
format, and `from_state_dict` casts them to the model's dtype.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from flax import traverse_util

from jaxnets import atomic
from jaxnets.errors import CheckpointError

Rename = Callable[[str], str]


def _to_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel":
        if value.ndim == 2:
            return value.T
        if value.ndim == 4:
            return value.transpose(3, 2, 0, 1)
    return value


def _from_torch_layout(leaf: str, value: np.ndarray) -> np.ndarray:
    if leaf == "kernel":
        if value.ndim == 2:
            return value.T
        if value.ndim == 4:
            return value.transpose(2, 3, 1, 0)
    return value


_PARAM_NAMES = {"kernel": "weight", "bias": "bias", "scale": "weight"}
_STAT_NAMES = {"mean": "running_mean", "var": "running_var"}


def torch_key(collection: str, path: tuple[str, ...], rename: Rename | None = None) -> str:
    """The PyTorch state_dict key of a Flax variable (collection 'params' or 'batch_stats')."""
    *modules, leaf = path
    prefix = ".".join(modules)
    if rename is not None:
        prefix = rename(prefix)
    names = _PARAM_NAMES if collection == "params" else _STAT_NAMES
    name = names.get(leaf, leaf)
    return f"{prefix}.{name}" if prefix else name


def to_state_dict(variables: Mapping[str, Any], rename: Rename | None = None
                  ) -> dict[str, np.ndarray]:
    """Flax variables ({'params': ..., 'batch_stats': ...}) -> a PyTorch-layout state_dict."""
    out: dict[str, np.ndarray] = {}
    for collection in ("params", "batch_stats"):
        flat = traverse_util.flatten_dict(dict(variables.get(collection, {})))
        for path, value in flat.items():
            value = np.asarray(value)
            out[torch_key(collection, path, rename)] = _contiguous(
                _to_torch_layout(path[-1], value))
            if collection == "batch_stats" and path[-1] == "mean":
                prefix = torch_key(collection, path, rename).rsplit(".", 1)[0]
                out[f"{prefix}.num_batches_tracked"] = np.zeros((), np.int64)
    return out


def from_state_dict(state_dict: Mapping[str, Any], template: Mapping[str, Any],
                    rename: Rename | None = None, strict: bool = True,
                    source: str = "state_dict") -> dict:
    """Fill a copy of `template` (Flax variables) from a PyTorch state_dict.

    Raises CheckpointError naming the key for a missing key, a shape mismatch, or (strict) a
    key the model does not have.
    """
    used = set()
    result = {}
    for collection in ("params", "batch_stats"):
        if collection not in template:
            continue
        flat = traverse_util.flatten_dict(dict(template[collection]))
        filled = {}
        for path, like in flat.items():
            key = torch_key(collection, path, rename)
            if key not in state_dict:
                raise CheckpointError(f"{source}: missing key {key!r}; is this a state_dict of "
                                      "the same model?")
            value = _from_torch_layout(path[-1], np.asarray(state_dict[key]))
            if value.shape != tuple(np.shape(like)):
                raise CheckpointError(
                    f"{source}: {key!r} has shape {tuple(np.asarray(state_dict[key]).shape)}, "
                    f"the model expects {tuple(np.shape(_to_torch_layout(path[-1], np.asarray(like))))}"
                    "; the file belongs to a different model")
            filled[path] = value.astype(np.asarray(like).dtype)
            used.add(key)
        result[collection] = traverse_util.unflatten_dict(filled)
    extra = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")]
    if strict and extra:
        raise CheckpointError(f"{source}: unexpected keys {extra[:5]}; the file belongs to a "
                              "different model")
    return result


def _contiguous(value: Any) -> np.ndarray:
    """A C-contiguous copy that keeps 0-d arrays 0-d (np.ascontiguousarray makes them [1])."""
    value = np.asarray(value)
    return np.ascontiguousarray(value).reshape(value.shape)


def _tensor_to_numpy(tensor) -> np.ndarray:
    """A CPU torch tensor as numpy; bfloat16 (which numpy lacks) as ml_dtypes' bfloat16, bit
    for bit, the same dtype safetensors.numpy gives for a bf16 .safetensors file."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor.dtype == torch.bfloat16:
        import ml_dtypes

        return tensor.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
    return tensor.numpy()


def save(path: str, state_dict: Mapping[str, np.ndarray],
         metadata: Mapping[str, str] | None = None) -> str:
    """Write a state_dict as safetensors (PyTorch's `safetensors.torch.load_file` reads it)."""
    from safetensors.numpy import save_file

    with atomic.replacing(path) as tmp:
        save_file({k: _contiguous(v) for k, v in state_dict.items()}, tmp,
                  metadata=dict(metadata) if metadata else None)
    return path


def load(path: str) -> dict[str, np.ndarray]:
    """Read a state_dict from `.safetensors`, or `.pth`/`.pt` (needs torch; weights_only=True)."""
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file; check the --weights path")
    if path.endswith((".pth", ".pt")):
        try:
            import torch
        except ImportError:
            raise CheckpointError(f"{path}: reading .pth needs torch (pip install torch), or "
                                  "convert it to .safetensors") from None
        try:
            sd = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a bad file
            # torch's messages run over many lines: keep the error type, one line in all
            raise CheckpointError(f"{path}: not a readable PyTorch state_dict "
                                  f"({type(e).__name__}); expected a file written by "
                                  "torch.save(model.state_dict())") from e
        if not isinstance(sd, Mapping):
            raise CheckpointError(f"{path}: holds a {type(sd).__name__}, not a state_dict")
        nested = [k for k, v in sd.items() if not isinstance(v, torch.Tensor)]
        if nested:
            raise CheckpointError(f"{path}: entry {nested[0]!r} is not a tensor (a training "
                                  "checkpoint?); save or pass model.state_dict() itself")
        try:
            return {k: _tensor_to_numpy(v) for k, v in sd.items()}
        except TypeError as e:  # a dtype numpy cannot hold (complex32, float8 variants, ...)
            raise CheckpointError(f"{path}: {e}; convert the state_dict to float32 before "
                                  "torch.save") from e
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({e}); export it "
                              "again") from e
