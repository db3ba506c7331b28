"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped), with strict checks.

IDX layout: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
big-endian uint32 per dimension, then the data. A wrong file must never become a silently wrong
array, so the magic number, the length and the dimensions are all checked.
"""

from __future__ import annotations

import gzip
import os
import zlib

import numpy as np

from jaxnets.errors import DataError

_UINT8 = 0x08


def read_bytes(path: str | os.PathLike) -> bytes:
    """Read a file, transparently gunzipping `*.gz`; a damaged gzip stream is a DataError."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the path and permissions") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(
                f"{path}: corrupt or truncated gzip data ({e}); delete it and get the file again"
            ) from e
    return raw


def parse_idx(data: bytes, name: str = "<bytes>", ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic number, dimensions and length."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] != _UINT8:
        raise DataError(
            f"{name}: bad magic number 0x{data[:4].hex()} (expected 0x000008NN for uint8 IDX); "
            "is this an MNIST-style IDX file?"
        )
    nd = data[3]
    if ndim is not None and nd != ndim:
        raise DataError(f"{name}: has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DataError(f"{name}: truncated header ({len(data)} bytes)")
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=nd, offset=4))
    expected = header + int(np.prod(dims, dtype=np.int64))
    if len(data) != expected:
        raise DataError(
            f"{name}: wrong length {len(data)} bytes for dimensions {dims} (expected {expected}); "
            "the file is truncated or corrupt, get it again"
        )
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a uint8 array."""
    return parse_idx(read_bytes(path), name=os.fspath(path), ndim=ndim)


def read_image_label_pair(images_path: str, labels_path: str) -> tuple[np.ndarray, np.ndarray]:
    """Read an IDX images/labels pair: images uint8[N, H, W, 1], labels int32[N]."""
    images = read_idx(images_path, ndim=3)
    labels = read_idx(labels_path, ndim=1)
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels but {images_path} has {images.shape[0]} "
            "images; the two files do not belong together"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9; file is corrupt")
    return images[..., None], labels.astype(np.int32)
