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

What is read is checked (CheckpointError, one line naming the file and the key):
- only regular files, read no further than they declare: safetensors checks its header's
  offsets against the file itself; a .pth is a zip whose entries `torch.save` writes
  uncompressed, so a compressed entry (which could expand to a thousand times its size when
  torch reads it) is refused before torch sees the file, and stored entries must lie inside it;
- every value `from_state_dict` puts into a float parameter must be a float (float16,
  bfloat16, float32, float64: widening or narrowing as PyTorch's `load_state_dict` copies),
  finite, and at most sqrt(the largest float) of the model's dtype in magnitude
  (`MAX_MAGNITUDE`). PyTorch casts int8, bool and int64 tensors silently and drops a complex
  tensor's imaginary part with a warning; none of them are weights of a float model, so here
  they are refused, as are NaN and infinities (one NaN in fc3.bias makes every prediction the
  same class).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax import traverse_util

from jaxnets import atomic
from jaxnets.data import bounded
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
            raw = np.asarray(state_dict[key])
            value = _from_torch_layout(path[-1], raw)
            if value.shape != tuple(np.shape(like)):
                raise CheckpointError(
                    f"{source}: {key!r} has shape {tuple(raw.shape)}, "
                    f"the model expects {tuple(np.shape(_to_torch_layout(path[-1], np.asarray(like))))}"
                    "; the file belongs to a different model")
            # values checked in the file's layout, so a bad one's index is the key's own
            raw = _checked_value(source, key, raw, np.asarray(like).dtype)
            filled[path] = _from_torch_layout(path[-1], raw)
            used.add(key)
        result[collection] = traverse_util.unflatten_dict(filled)
    extra = [k for k in state_dict if k not in used and not k.endswith("num_batches_tracked")]
    if strict and extra:
        raise CheckpointError(f"{source}: unexpected keys {extra[:5]}; the file belongs to a "
                              "different model")
    return result


def max_magnitude(dtype) -> float:
    """The largest |value| a parameter of `dtype` may hold: sqrt of the dtype's largest finite
    number (1.8e19 for float32). Above it a value's square overflows to inf (a variance, an L2
    penalty, a squared error of it), and a product with any input above 1 comes near that; no
    trained network holds such a weight (trained weights are O(1); even BatchNorm running
    variances stay many orders below), while a corrupted file or bytes of another dtype read as
    floats (3e38) do."""
    return float(np.sqrt(float(jnp.finfo(dtype).max)))


def _checked_value(source: str, key: str, value: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """`value` cast to the parameter's `dtype`, or a CheckpointError naming the key: a float
    parameter takes only float values, finite and at most `max_magnitude(dtype)`; an integer
    one only integers."""
    got = value.dtype
    if jnp.issubdtype(dtype, jnp.floating):
        if not jnp.issubdtype(got, jnp.floating):
            kind = "complex" if jnp.issubdtype(got, jnp.complexfloating) else "not float"
            raise CheckpointError(
                f"{source}: {key!r} holds {got} values ({kind}) for a {np.dtype(dtype)} "
                "parameter; a state_dict of float weights is expected (PyTorch's load_state_dict"
                " would cast them silently, or drop the imaginary part), so this file is not "
                "this model's weights")
        with np.errstate(over="ignore", invalid="ignore"):
            cast = np.asarray(value).astype(dtype)
            wide = cast.astype(np.float64)  # bfloat16 and float8 compare through float64
        limit = max_magnitude(dtype)
        bad = np.flatnonzero(~(np.abs(wide) <= limit))  # NaN compares False: caught here too
        if bad.size:
            i = int(bad[0])
            where = list(map(int, np.unravel_index(i, wide.shape))) if wide.ndim else []
            v = float(np.asarray(value).reshape(-1)[i].astype(np.float64))
            what = (f"{v}, not a number a weight can hold" if not np.isfinite(v) else
                    f"{v:g}, which overflows {np.dtype(dtype)}" if not np.isfinite(wide.flat[i])
                    else f"{v:g}, beyond {limit:.2g}, the largest magnitude a {np.dtype(dtype)} "
                    "weight may have (its square overflows)")
            raise CheckpointError(
                f"{source}: {key!r}{where} is {what} (one of {bad.size} such values); the file "
                "is damaged or was saved from a diverged run: use other weights")
        return cast
    if got.kind != np.dtype(dtype).kind:
        raise CheckpointError(f"{source}: {key!r} holds {got} values for a {np.dtype(dtype)} "
                              "variable; the file belongs to a different model")
    return value.astype(dtype)


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


def _check_pth_zip(path: str) -> None:
    """Refuse a .pth zip whose entries torch could expand past the file: `torch.save` stores
    every entry uncompressed (size on disk == size read), so a compressed entry (torch.load
    would inflate it to the size it declares, up to ~1000x) or one reaching outside the file
    means the file was not written by torch.save. A pre-1.6 (non-zip) .pth passes: torch reads
    its storages from the file itself, so no more than the file's bytes come in."""
    import zipfile

    with bounded.open_regular(path, CheckpointError) as f:
        if not zipfile.is_zipfile(f):
            return
        size = bounded.size_of(f)
        try:
            entries = zipfile.ZipFile(f).infolist()
        except (zipfile.BadZipFile, OSError, ValueError) as e:
            raise CheckpointError(f"{path}: not a readable PyTorch state_dict ({e}); expected a "
                                  "file written by torch.save(model.state_dict())") from None
    packed = [e for e in entries
              if e.compress_type != zipfile.ZIP_STORED or e.file_size != e.compress_size]
    if packed:
        big = max(packed, key=lambda e: e.file_size)
        raise CheckpointError(
            f"{path}: {len(packed)} of its entries are compressed ({big.filename!r}: "
            f"{big.compress_size:,} bytes that expand to {big.file_size:,}); torch.save never "
            "compresses, so this file was not written by it: load it in PyTorch and "
            "torch.save(model.state_dict()) again")
    for e in entries:
        if e.header_offset + e.compress_size > size:
            raise CheckpointError(f"{path}: entry {e.filename!r} declares {e.file_size:,} bytes "
                                  "past the end of the file; the file is cut or damaged, get it "
                                  "again")


def load(path: str) -> dict[str, np.ndarray]:
    """Read a state_dict from `.safetensors`, or `.pth`/`.pt` (needs torch; weights_only=True).

    Only a regular file is read (a FIFO would block forever, /dev/zero never ends), no further
    than it declares (see the module's docstring); errors are one-line CheckpointErrors."""
    if not os.path.lexists(path):
        raise CheckpointError(f"{path}: no such file; check the path")
    bounded.open_regular(path, CheckpointError).close()  # regular (a FIFO does not block here)
    if path.endswith((".pth", ".pt")):
        try:
            import torch
        except ImportError:
            raise CheckpointError(f"{path}: reading .pth needs torch (pip install torch), or "
                                  "convert it to .safetensors") from None
        _check_pth_zip(path)
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
        return {k: _tensor_from_file(path, k, v) for k, v in sd.items()}
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    try:
        return load_file(path)
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: corrupt or not a safetensors file ({e}); export it "
                              "again") from e


def _tensor_from_file(path: str, key: str, tensor) -> np.ndarray:
    """A tensor torch.load gave, as numpy, or a CheckpointError naming its key: a meta tensor
    (shape without data, what `torch.device('meta')` models save), a sparse or quantized one,
    or a dtype numpy cannot hold (complex32, float8 variants...)."""
    if tensor.is_meta:
        raise CheckpointError(f"{path}: {key!r} is a meta tensor (a shape without values, saved "
                              "from a model built on device 'meta'); save the state_dict of a "
                              "model whose weights are loaded")
    try:
        return _tensor_to_numpy(tensor)
    except (TypeError, RuntimeError, NotImplementedError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{path}: {key!r} cannot be read as an array ({first}); convert "
                              "the state_dict to dense float32 tensors before torch.save") from None
