"""Reader for the CIFAR-10 *binary* version (`cifar-10-batches-bin`), never the pickled one.

Each record is 1 label byte followed by 3072 pixel bytes: the red, green and blue 32x32 planes,
row-major. Files may sit in a directory or inside `cifar-10-binary.tar.gz` (read in place).
"""

from __future__ import annotations

import os
import tarfile

import numpy as np

from jaxnets.errors import DataError, DataUnavailable

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


def find_files(data_dir: str, split: str) -> list[str] | str | None:
    """The batch files for `split` under data_dir, or the path of the tar archive, or None."""
    names = TRAIN_FILES if split == "train" else TEST_FILES
    for d in (data_dir, os.path.join(data_dir, "cifar-10-batches-bin")):
        paths = [os.path.join(d, n) for n in names]
        if all(os.path.isfile(p) for p in paths):
            return paths
    archive = os.path.join(data_dir, ARCHIVE)
    return archive if os.path.isfile(archive) else None


def read_split(data_dir: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Read the train (50000) or test (10000) split from a directory or the tar archive."""
    found = find_files(data_dir, split)
    if found is None:
        names = TRAIN_FILES if split == "train" else TEST_FILES
        raise DataUnavailable(
            f"{data_dir}: no CIFAR-10 binary files ({', '.join(names)} or {ARCHIVE}); "
            "download the 'CIFAR-10 binary version' and pass its folder with --data-dir"
        )
    parts = []
    if isinstance(found, str):
        names = TRAIN_FILES if split == "train" else TEST_FILES
        try:
            with tarfile.open(found, "r:gz") as tar:
                members = {os.path.basename(m.name): m for m in tar.getmembers() if m.isfile()}
                for n in names:
                    if n not in members:
                        raise DataError(f"{found}: archive has no {n}; get the archive again")
                    parts.append(parse_batch(tar.extractfile(members[n]).read(), f"{found}:{n}"))
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{found}: corrupt or truncated archive ({e}); get it again") from e
    else:
        for p in found:
            with open(p, "rb") as f:
                parts.append(parse_batch(f.read(), p))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels


def write_batch(path: str, images: np.ndarray, labels: np.ndarray) -> None:
    """Write images uint8[N,32,32,3] and labels in the binary format (used to make test data)."""
    planes = np.asarray(images, np.uint8).transpose(0, 3, 1, 2).reshape(len(images), -1)
    records = np.concatenate([np.asarray(labels, np.uint8)[:, None], planes], axis=1)
    with open(path, "wb") as f:
        f.write(records.tobytes())
