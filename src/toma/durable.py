"""Durable file operations shared by the store, the Maildir transport and the secret.

A file that must survive a power cut is written whole under a name nobody
else uses, fsynced, and only then given its real name (a link or a rename),
whose directory entry is fsynced in turn. :func:`write_new` is the first half,
:func:`fsync_dir` the last; :func:`atomic_write` does both for a file that
replaces its old version (the store's snapshots, the OAuth2 token file).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from toma.errors import StoreError

TEMP_SUFFIX = ".tmp"  # a file being written under a name nobody else uses


def fsync_dir(path: Path) -> None:
    """Make a created, renamed or removed directory entry survive a power cut."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_new(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create ``path``, which must not exist, holding ``data`` written through to disk.

    Raises :class:`FileExistsError` when the name is taken (nothing is then
    written). On any other failure the partial file is the caller's to remove.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())


def atomic_write(path: Path, chunks: Iterable[bytes]) -> int:
    """Replace ``path`` with ``chunks``, all or nothing, and return the size written.

    The temporary file lives in the same directory (a rename is only atomic
    within one file system) and is created 0600 by ``mkstemp``.
    """
    try:
        fd, temp_name = tempfile.mkstemp(
            dir=path.parent, prefix=f"{path.name}.", suffix=TEMP_SUFFIX
        )
    except OSError as exc:
        raise StoreError(f"cannot create a temporary file: {exc.strerror}", file=path) from exc
    temp = Path(temp_name)
    try:
        size = 0
        with os.fdopen(fd, "wb") as out:
            for chunk in chunks:
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        temp.replace(path)
        fsync_dir(path.parent)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise StoreError(f"cannot write: {exc.strerror}", file=path) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    return size
