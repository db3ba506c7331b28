"""Atomic file writes: readers see the old file or the new one, never half of one.

    with atomic.replacing(path) as tmp:
        write(tmp)          # any writer that takes a path

The bytes go to a temporary file with a unique name in the same folder (`tempfile.mkstemp`,
so concurrent writers of one path never share it), which `os.replace` then renames over
`path` in one step. A write that fails midway (a full disk) leaves the previous file as it
was and removes the temporary file.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def replacing(path: str) -> Iterator[str]:
    """Yield a unique temporary path next to `path`; on success it replaces `path`.

    Args:
      path: the file to write (its folder is created if missing).

    Returns (as the context value):
      the temporary path to write to; it is removed if the block raises.
    """
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".tmp", dir=folder)
    os.close(fd)
    try:
        yield tmp
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
