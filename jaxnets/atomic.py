"""Atomic file writes: readers see the old file or the new one, never half of one.

    with atomic.replacing(path) as tmp:
        write(tmp)          # any writer that takes a path

The bytes go to a temporary file with a unique name in the same folder (`tempfile.mkstemp`,
so concurrent writers of one path never share it), which `os.replace` then renames over
`path` in one step. A write that fails midway (a full disk) leaves the previous file as it
was and removes the temporary file.

A process killed during the write (SIGKILL, power loss) cannot remove its temporary file, so
each one is named recognisably, `.<name>.<random>.jaxnets-tmp`, and its writer holds an
exclusive `flock` on it until the rename. `remove_stale` deletes the temporaries of a folder
that nobody holds: those of writers that died. The next write of the same file does it for that
file; the experiments' CLI does it for the whole output folder it holds.
"""

from __future__ import annotations

import contextlib
import os
import re
import stat
import tempfile
from collections.abc import Iterator

try:
    import fcntl
except ImportError:  # Windows: no flock, so no temporary is ever taken for stale
    fcntl = None

SUFFIX = ".jaxnets-tmp"
# mkstemp's random part: 8 characters of [a-z0-9_]
_TEMPORARY = re.compile(r"\.(?P<base>.+)\.[a-z0-9_]{8}" + re.escape(SUFFIX))
# A file name may be at most this many bytes on the usual file systems (NAME_MAX).
NAME_MAX = 255


def _umask() -> int:
    """The process's umask (read by setting it and back: there is no getter)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _base(path: str) -> str:
    """The target's name as it appears in its temporaries: cut so that the temporary's name
    (`.` + base + `.` + 8 random + SUFFIX) still fits NAME_MAX bytes."""
    room = NAME_MAX - len(SUFFIX) - 10
    name = os.fsencode(os.path.basename(path))
    return os.fsdecode(name[:room]) if len(name) > room else os.path.basename(path)


def remove_stale(folder: str, path: str | None = None) -> list[str]:
    """Delete the temporaries in `folder` whose writer is gone (no process holds their lock);
    only those of `path` when given. Returns the names deleted. A temporary being written is
    locked by its writer and stays; anything not named as ours, or not a regular file, stays."""
    if fcntl is None:
        return []
    base = None if path is None else _base(path)
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    removed = []
    for name in names:
        match = _TEMPORARY.fullmatch(name)
        if match is None or (base is not None and match["base"] != base):
            continue
        full = os.path.join(folder, name)
        try:
            fd = os.open(full, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except OSError:
            continue
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                continue
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)   # held by a live writer: raises
            if os.path.samestat(os.fstat(fd), os.stat(full)):
                os.remove(full)
                removed.append(name)
        except OSError:
            continue
        finally:
            os.close(fd)
    return removed


def _temporary(path: str, folder: str) -> tuple[int, str]:
    """A new temporary file for `path` in `folder`, locked, as (fd, its path). A file just made
    is unlocked for an instant, and remove_stale may take it for a dead writer's then: this one
    then makes another (it knows from its own lock failing, or from the name no longer being
    its file)."""
    for _ in range(100):
        fd, tmp = tempfile.mkstemp(prefix=f".{_base(path)}.", suffix=SUFFIX, dir=folder)
        if fcntl is None:
            return fd, tmp
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:      # remove_stale holds it, and deletes it
            os.close(fd)
            continue
        except OSError:              # no locks on this file system: nor does remove_stale delete
            return fd, tmp
        try:
            if os.path.samestat(os.fstat(fd), os.stat(tmp)):
                return fd, tmp
        except FileNotFoundError:    # deleted by remove_stale before the lock
            pass
        os.close(fd)
    raise OSError(f"{folder}: cannot make a temporary file for {os.path.basename(path)} "
                  "(another process keeps deleting them)")


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
    remove_stale(folder, path)   # left by a writer of this file that was killed
    # (its lock is held until the rename, so that remove_stale leaves it alone)
    fd, tmp = _temporary(path, folder)
    try:
        yield tmp
        # mkstemp creates the file 0600; give it the mode a plain open() would have.
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    finally:
        os.close(fd)
