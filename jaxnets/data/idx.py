"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped), with strict checks.

IDX layout: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
big-endian uint32 per dimension, then the data. A wrong file must never become a silently wrong
array, so the magic number, the length and the dimensions are all checked.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Mapping

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
    # Python integers: numpy's int64 product wraps around for huge dimensions (2^31 x 2^31 x 4
    # is 0 mod 2^64), which made a corrupt header pass this check.
    expected = header + math.prod(dims)
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
    if images.shape[0] == 0:
        raise DataError(f"{images_path}: holds 0 images, nothing to train or test on; the file is "
                        "cut or not the real one, get it again")
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels but {images_path} has {images.shape[0]} "
            "images; the two files do not belong together"
        )
    if labels.size and labels.max() > 9:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9; file is corrupt")
    return images[..., None], labels.astype(np.int32)


def find_split(directory: str, split: str, files: tuple[str, ...]) -> dict[str, str] | None:
    """{official file name: path} of a split's files in directory, raw or gzipped, or None."""
    del split  # the file names say it
    found = {}
    for official in files:
        stem = official.removesuffix(".gz")
        hit = next((os.path.join(directory, stem + ext) for ext in ("", ".gz")
                    if os.path.isfile(os.path.join(directory, stem + ext))), None)
        if hit is None:
            return None
        found[official] = hit
    return found


def read_split(paths: Mapping[str, str], split: str,
               files: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Read a split from its (images, labels) IDX files, `paths` keyed by official file name."""
    del split  # the file names say it
    images_file, labels_file = files
    return read_image_label_pair(paths[images_file], paths[labels_file])
