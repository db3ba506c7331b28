"""Reader for the IDX format of MNIST and Fashion-MNIST (raw or gzipped), with strict checks.

IDX layout: 2 zero bytes, a type code (0x08 = uint8), the number of dimensions, then one
big-endian uint32 per dimension, then the data. A wrong file must never become a silently wrong
array, so the magic number, the length and the dimensions are all checked.
"""

from __future__ import annotations

import math
import os
import zlib
from collections.abc import Mapping

import numpy as np

from jaxnets.data import bounded
from jaxnets.errors import DataError

_UINT8 = 0x08


def read_bytes(path: str | os.PathLike) -> np.ndarray:
    """A regular file's bytes (uint8 array), gunzipped when it is gzip data, no more than its
    IDX header declares (the header is read first, then exactly its data); errors name the
    file."""
    path = os.fspath(path)
    with bounded.open_regular(path) as f:
        if f.read(2) == bounded.GZIP_MAGIC:
            f.seek(0)
            stream = bounded.Gunzip(f, path)
            header, declared = _read_header(path, stream.read)
            stream.check_declared(declared)
            bounded.check_fits_memory(path, declared)
            data = stream.read(declared - len(header), prefix=header)
            if len(data) == declared:
                stream.check_ends(declared)
            return data
        f.seek(0)
        size = bounded.size_of(f)
        header, declared = _read_header(path, f.read)
        if size != declared:  # said from the file's size, before reading any of its data
            raise DataError(_wrong_length(path, size, _dims(header), declared))
        bounded.check_fits_memory(path, declared)
        return bounded.read_up_to(f, declared - len(header), prefix=header)


def _read_header(path: str, read) -> tuple[bytes, int]:
    """(the IDX header read with `read`, the total size it declares: header + data). A header
    that is not IDX's gives `parse_idx`'s errors."""
    head = bytes(read(4))
    if len(head) < 4 or head[:3] != bytes([0, 0, _UINT8]):
        parse_idx(head, path)  # raises the right error (too short, bad magic)
    header = head + bytes(read(4 * head[3]))
    if len(header) < 4 + 4 * head[3]:
        raise DataError(f"{path}: truncated header ({len(header)} bytes)")
    return header, len(header) + math.prod(_dims(header))


def _dims(header: bytes) -> tuple[int, ...]:
    return tuple(int(d) for d in np.frombuffer(header, dtype=">u4", count=header[3], offset=4))


def _wrong_length(name: str, length: int, dims: tuple[int, ...], expected: int) -> str:
    return (f"{name}: wrong length {length} bytes for dimensions {dims} (expected {expected}); "
            "the file is truncated or corrupt, get it again")


def parse_idx(data: bytes | np.ndarray, name: str = "<bytes>",
              ndim: int | None = None) -> np.ndarray:
    """Parse IDX bytes into a uint8 array, checking magic number, dimensions and length."""
    if len(data) < 4:
        raise DataError(f"{name}: too short to be an IDX file ({len(data)} bytes)")
    if data[0] != 0 or data[1] != 0 or data[2] != _UINT8:
        raise DataError(f"{name}: bad magic number 0x{bytes(data[:4]).hex()} (expected "
                        "0x000008NN for uint8 IDX); is this an MNIST-style IDX file?")
    nd = int(data[3])
    if ndim is not None and nd != ndim:
        raise DataError(f"{name}: has {nd} dimensions, expected {ndim}")
    header = 4 + 4 * nd
    if len(data) < header:
        raise DataError(f"{name}: truncated header ({len(data)} bytes)")
    dims = _dims(bytes(data[:header]))
    # Python integers: numpy's int64 product wraps around for huge dimensions (2^31 x 2^31 x 4
    # is 0 mod 2^64), which made a corrupt header pass this check.
    expected = header + math.prod(dims)
    if len(data) != expected:
        raise DataError(_wrong_length(name, len(data), dims, expected))
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims)


def read_idx(path: str | os.PathLike, ndim: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or .gz) into a uint8 array. A raw file with its .gz beside it
    (torchvision's layout) must hold the same bytes: which one is right cannot be guessed."""
    path = os.fspath(path)
    data = read_bytes(path)
    if not path.endswith(".gz") and bounded.present(path + ".gz"):
        _check_twin(path, data)
    return parse_idx(data, name=path, ndim=ndim)


def _check_twin(path: str, data: bytes) -> None:
    """DataError unless `path`.gz holds `data` (the raw file's bytes), told by the gzip trailer's
    CRC-32 and length of what it holds: the .gz is not decompressed for this."""
    twin = path + ".gz"
    with bounded.open_regular(twin) as f:
        size = bounded.size_of(f)
        f.seek(max(size - 8, 0))
        trailer = f.read(8)
    same = (len(trailer) == 8 and size >= 18 and int.from_bytes(trailer[:4], "little")
            == zlib.crc32(data) and int.from_bytes(trailer[4:], "little") == len(data) % 2**32)
    if not same:
        raise DataError(f"{os.path.dirname(path) or '.'}: holds both {os.path.basename(path)} "
                        f"and {os.path.basename(twin)}, with different contents, so which one is "
                        f"right is unknown; delete the wrong one (the raw file is usually "
                        f"unpacked from the .gz: gunzip -kf {twin})")


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
                    if bounded.present(os.path.join(directory, stem + ext))), None)
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
