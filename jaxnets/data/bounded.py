"""Opening and reading input files: regular files only, and never more bytes than they declare.

Every reader of jaxnets opens its files here (IDX, CIFAR-10 binary and its archive, text
tables), or checks them here before handing the path to its own library (safetensors, torch's
.pth: `jaxnets.torch_io`), so the rules hold everywhere at once:

- only regular files: a FIFO would block the open (or the read) forever and a device such as
  /dev/zero never ends; both are refused with one line naming the path. The open itself does
  not block (O_NONBLOCK, then `fstat` on the opened descriptor, so a file swapped for a FIFO
  between a check and the open is still caught);
- a file is read up to the size it declares and no further: a raw file up to its `st_size`,
  an IDX header's dimensions, a gzip stream up to the size the header inside it declares,
  then one byte more to prove the stream ends there (a 6 MB .gz can expand to 6 GB: it is
  decompressed in bounded pieces, never whole);
- a declared size no machine could hold (more than its physical memory) is refused before
  anything is read.
"""

from __future__ import annotations

import gzip
import io
import os
import stat
import warnings
import zlib
from typing import BinaryIO

import numpy as np

from jaxnets.errors import DataError

GZIP_MAGIC = b"\x1f\x8b"
# deflate's largest expansion: each 258-byte match costs at least 2 bits, so no stream expands
# more than 1032 : 1 (zlib's technical notes). A header declaring more than this, for the
# compressed bytes it came with, cannot be telling the truth.
DEFLATE_MAX_RATIO = 1032
# Pieces in which streams are decompressed and files read: the peak memory of a read is the
# data it keeps plus one piece.
PIECE = 1 << 20
# A text table is parsed in memory: its bytes, plus float32 numbers of at most twice its size
# (the densest text, "0,", is 2 bytes per 4-byte number). Measured: 80 MB of "0," parsed with
# np.loadtxt peaked at 245 MB over the interpreter, 3.05 times the file. A file of more than a
# quarter of the machine's memory is refused, not parsed until the machine runs out.
TEXT_MEMORY_SHARE = 4


def memory_bytes() -> int | None:
    """This machine's physical memory (os.sysconf), None where it cannot be read."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return None


def _gib(n: int) -> str:
    return f"{n / 2**30:,.1f} GiB"


def open_regular(path: str | os.PathLike, error: type[Exception] = DataError) -> BinaryIO:
    """`path` opened for binary reading; `error` (one line naming it) unless it is a regular file.

    The open does not block on a FIFO (O_NONBLOCK); the type is read from the opened descriptor.
    """
    path = os.fspath(path)
    try:  # refused from its stat first: opening a device can have side effects
        _check_regular(path, os.stat(path).st_mode, error)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise error(f"{path}: cannot read ({e.strerror}); check the path and its "
                    "permissions") from None
    try:
        _check_regular(path, os.fstat(fd).st_mode, error)  # (swapped since the stat?)
        os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _check_regular(path: str, mode: int, error: type[Exception]) -> None:
    if not stat.S_ISREG(mode):
        kind = ("a directory" if stat.S_ISDIR(mode) else "a FIFO (named pipe)"
                if stat.S_ISFIFO(mode) else "a device" if stat.S_ISCHR(mode)
                or stat.S_ISBLK(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "not a regular file")
        raise error(f"{path}: is {kind}, not a regular file; only files can be read (copy "
                    "the data into a file first)")


def size_of(f: BinaryIO) -> int:
    """The size an opened file declares (fstat)."""
    return os.fstat(f.fileno()).st_size


def check_fits_memory(path: str, declared: int, what: str = "data",
                      error: type[Exception] = DataError, memory: int | None = None) -> None:
    """`error` when `declared` bytes are more than this machine's memory (`memory`, default
    `memory_bytes()`): a corrupt size field, refused before anything is read."""
    memory = memory_bytes() if memory is None else memory
    if memory is not None and declared > memory:
        raise error(f"{path}: declares {declared:,} bytes of {what} ({_gib(declared)}), more than "
                    f"this machine's {_gib(memory)} of memory; the file is corrupt, get it again")


def read_up_to(stream: BinaryIO, size: int, prefix: bytes = b"") -> np.ndarray:
    """`prefix` + at most `size` bytes of `stream` (fewer only where the stream ends), as a
    uint8 array read in place in pieces: np.empty's pages are only used as bytes arrive, so a
    header that declares more than comes costs what comes, and nothing is copied (joining
    pieces would hold everything twice)."""
    out = np.empty(len(prefix) + size, np.uint8)
    out[: len(prefix)] = np.frombuffer(prefix, np.uint8)
    view, got = memoryview(out), len(prefix)
    while got < len(out):
        n = stream.readinto(view[got : got + PIECE])
        if not n:
            break
        got += n
    view.release()
    return out[:got]


def present(path: str) -> bool:
    """Whether a file is at `path`: anything but a folder. Finders use it, so that a FIFO or a
    device where a data file should be is found and then refused by name, instead of the data
    being called missing."""
    return os.path.lexists(path) and not os.path.isdir(path)


class Gunzip:
    """A gzip stream read in bounded pieces, errors as one line naming the file."""

    def __init__(self, f: BinaryIO, path: str):
        self.path = path
        self.compressed = size_of(f)
        self._gz = gzip.GzipFile(fileobj=f, mode="rb")

    def read(self, size: int, prefix: bytes = b"") -> np.ndarray:
        try:
            return read_up_to(self._gz, size, prefix)
        except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
            raise DataError(f"{self.path}: corrupt or truncated gzip data ({e}); delete it and "
                            "get the file again") from None

    def check_declared(self, declared: int) -> None:
        """Refuse a declared size this many compressed bytes cannot expand to."""
        if declared > DEFLATE_MAX_RATIO * self.compressed + PIECE:
            raise DataError(f"{self.path}: its header declares {declared:,} bytes, more than "
                            f"{self.compressed:,} compressed bytes can expand to; the file is "
                            "corrupt, get it again")

    def check_ends(self, declared: int) -> None:
        """Refuse a stream that goes on past the `declared` bytes already read (a gzip bomb, or
        two files in one); reading one byte more also checks the stream's CRC at its end."""
        if self.read(1).size:
            raise DataError(f"{self.path}: the data goes on past the {declared:,} bytes its "
                            "header declares; the file is corrupt or not the dataset's, get it "
                            "again")


def read_rows(path: str | os.PathLike, delimiter: str | None,
              memory: int | None = None) -> np.ndarray:
    """A text file of numbers, one row per line, as float32[lines, columns].

    Refused with one line naming the file (DataError): anything but a regular file, a file of
    more than 1/TEXT_MEMORY_SHARE of the machine's memory, an empty file or one without rows,
    rows of unequal length or non-numbers, and NaN or infinite values (no training can use
    them: the first batch holding one makes every loss after it NaN).
    """
    path = os.fspath(path)
    with open_regular(path) as f:
        size = size_of(f)
        memory = memory_bytes() if memory is None else memory
        if memory is not None and size * TEXT_MEMORY_SHARE > memory:
            raise DataError(f"{path}: {_gib(size)} of text, too large to parse in this machine's "
                            f"{_gib(memory)} of memory (it takes about 3 times the file); split "
                            "it, or store the numbers in a binary format")
        data = f.read(size)  # a regular file: no more than the size it declared when opened
    if not data or data.isspace():
        raise DataError(f"{path}: is empty; it must hold one example per line (rows of numbers)")
    try:
        with warnings.catch_warnings():
            # numpy warns "input contained no data" for comment-only files: said below instead
            warnings.simplefilter("ignore", UserWarning)
            rows = np.loadtxt(io.BytesIO(data), delimiter=delimiter, dtype=np.float32, ndmin=2)
    except ValueError as e:
        raise DataError(f"{path}: not rows of numbers ({e}); one example per line") from None
    if rows.shape[0] == 0 or rows.shape[1] == 0:
        raise DataError(f"{path}: holds no rows of numbers; one example per line")
    bad = np.argwhere(~np.isfinite(rows))
    if bad.size:
        line, col = (int(i) for i in bad[0])
        raise DataError(f"{path}: row {line + 1}, column {col + 1} is {rows[line, col]} (one of "
                        f"{len(bad)} NaN or infinite values); no training can use it, fix or "
                        "drop those rows")
    return rows
