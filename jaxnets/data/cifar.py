"""Reader for the CIFAR-10 *binary* version (`cifar-10-batches-bin`), never the pickled one.

Each record is 1 label byte followed by 3072 pixel bytes: the red, green and blue 32x32 planes,
row-major. Files may sit in a directory or inside `cifar-10-binary.tar.gz` (read in place).
"""

from __future__ import annotations

import os
import tarfile
import zlib
from collections.abc import Mapping

import numpy as np

from jaxnets.data import bounded
from jaxnets.errors import DataError

RECORD = 1 + 3 * 32 * 32
TRAIN_FILES = tuple(f"data_batch_{i}.bin" for i in range(1, 6))
TEST_FILES = ("test_batch.bin",)
ARCHIVE = "cifar-10-binary.tar.gz"
CLASS_NAMES = ("plane", "car", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def parse_batch(data: bytes, name: str = "<bytes>") -> tuple[np.ndarray, np.ndarray]:
    """Parse one binary batch: images uint8[N, 32, 32, 3] (NHWC), labels int32[N]."""
    if len(data) == 0 or len(data) % RECORD:
        raise DataError(_wrong_length(name, len(data)))
    records = np.frombuffer(data, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0].astype(np.int32)
    if labels.max() > 9:
        raise DataError(f"{name}: label {int(labels.max())} outside 0..9; the file is corrupt")
    images = records[:, 1:].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def _wrong_length(name: str, length: int) -> str:
    return (f"{name}: wrong length {length} bytes, not a whole number of {RECORD}-byte CIFAR-10 "
            "records; the file is truncated or not the binary version, get it again")


def _batch_files(split: str) -> tuple[str, ...]:
    return TRAIN_FILES if split == "train" else TEST_FILES


def find_split(directory: str, split: str, files: tuple[str, ...]) -> dict[str, str] | None:
    """{file name: path} of the split's batch files in directory, else of the archive, or None."""
    del files  # the official download is the archive; a folder may hold its members instead
    for d in (directory, os.path.join(directory, "cifar-10-batches-bin")):
        paths = {n: os.path.join(d, n) for n in _batch_files(split)}
        if all(bounded.present(p) for p in paths.values()):
            return paths
    archive = os.path.join(directory, ARCHIVE)
    return {ARCHIVE: archive} if bounded.present(archive) else None


def _read_archive(path: str, split: str) -> list[tuple[np.ndarray, np.ndarray]]:
    """The split's batches read in place from the tar.gz archive (nothing extracted to disk),
    each member no further than the size its tar header declares, which must be whole records
    and fit in memory; the scan stops once the split's files are found."""
    wanted = _batch_files(split)
    found: dict[str, bytes] = {}
    try:
        with bounded.open_regular(path) as f, tarfile.open(fileobj=f, mode="r:gz") as tar:
            for member in tar:
                name = os.path.basename(member.name)
                if not member.isfile() or name not in wanted or name in found:
                    continue
                where = f"{path}:{name}"
                if member.size == 0 or member.size % RECORD:
                    raise DataError(_wrong_length(where, member.size))
                bounded.check_fits_memory(where, member.size)
                found[name] = bounded.read_up_to(tar.extractfile(member), member.size)
                if len(found) == len(wanted):
                    break
    except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path}: corrupt or truncated archive, or unreadable ({e}); delete it and "
                        "get it again") from e
    missing = [n for n in wanted if n not in found]
    if missing:
        raise DataError(f"{path}: the archive has no {missing[0]}; it is not CIFAR-10's binary "
                        "version, get it again")
    return [parse_batch(found[n], f"{path}:{n}") for n in wanted]


def _read_batch_file(path: str) -> tuple[np.ndarray, np.ndarray]:
    """One batch file, its length (whole records, fits in memory) checked before it is read."""
    with bounded.open_regular(path) as f:
        size = bounded.size_of(f)
        if size == 0 or size % RECORD:
            raise DataError(_wrong_length(path, size))
        bounded.check_fits_memory(path, size)
        return parse_batch(bounded.read_up_to(f, size), path)


def read_split(paths: Mapping[str, str], split: str,
               files: tuple[str, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """Read the train (50000) or test (10000) split from `find_split`'s files or the archive."""
    del files
    if ARCHIVE in paths:
        parts = _read_archive(paths[ARCHIVE], split)
    else:
        parts = [_read_batch_file(paths[n]) for n in _batch_files(split)]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def write_batch(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8[N,32,32,3] and labels in the binary format (used to make test data)."""
    planes = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1)
    with open(path, "wb") as f:
        f.write(records.tobytes())
