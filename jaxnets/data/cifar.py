"""Reader for the CIFAR-10 *binary* version (`cifar-10-batches-bin`), never the pickled one.

Each record is 1 label byte followed by 3072 pixel bytes: the red, green and blue 32x32 planes,
row-major. Files may sit in a directory or inside `cifar-10-binary.tar.gz` (read in place).
"""

from __future__ import annotations

import os
import tarfile
from collections.abc import Mapping

import numpy as np

from jaxnets.errors import DataError

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
ARCHIVE = "cifar-10-binary.tar.gz"
CLASS_NAMES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_batch(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse one binary batch: images uint8[N, 32, 32, 3] (NHWC), labels int32[N]."""
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(
            f"{name}: wrong length {len(data)} bytes, not a whole number of {RECORD}-byte CIFAR-10 "
            "records; the file is truncated or not the binary version, get it again"
        )
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise DataError(f"{name}: label {int(labels.max())} outside 0..9; the file is corrupt")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _batch_files(split: str) -> tuple[str, ...]:
    return TRAIN_FILES if split == "train" else TEST_FILES


def find_split(directory: str, split: str, files: tuple[str, ...]) -> dict[str, str] | None:
    """{file name: path} of the split's batch files in directory, else of the archive, or None."""
    del files  # the official download is the archive; a folder may hold its members instead
    for d in (directory, os.path.join(directory, "cifar-10-batches-bin")):
        paths = {n: os.path.join(d, n) for n in _batch_files(split)}
        if all(os.path.isfile(p) for p in paths.values()):
            return paths
    archive = os.path.join(directory, ARCHIVE)
    return {ARCHIVE: archive} if os.path.isfile(archive) else None


def _read_archive(path: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The split's batches read in place from the tar.gz archive (nothing extracted to disk)."""
    parts = []
    try:
        with tarfile.open(path, "r:gz") as tar:
            members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
            for n in _batch_files(split):
                if n not in members:
                    raise DataError(f"{path}: the archive has no {n}; it is not CIFAR-10's binary "
                                    "version, get it again")
                parts.append(parse_batch(tar.extractfile(members[n]).read(), f"{path}:{n}"))
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"{path}: corrupt or truncated archive, or unreadable ({e}); delete it and "
                        "get it again") from e
    return parts


def _read_file(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror}); check the path and its "
                        "permissions") from e


def read_split(paths: Mapping[str, str], split: str,
               files: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Read the train (50000) or test (10000) split from `find_split`'s files or the archive."""
    del files
    if ARCHIVE in paths:
        parts = _read_archive(paths[ARCHIVE], split)
    else:
        parts = [parse_batch(_read_file(paths[n]), paths[n]) for n in _batch_files(split)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def write_batch(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8[N,32,32,3] and labels in the binary format (used to make test data)."""
    planes = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1)
    with open(path, "wb") as f:
        f.write(records.tobytes())
