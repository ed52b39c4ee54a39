"""Durable file operations shared by the store, the Maildir transport and the secret.

A file that must survive a power cut is written whole under a name nobody
else uses, fsynced, and only then given its real name (a link or a rename),
whose directory entry is fsynced in turn. :func:`write_new` is the first half,
:func:`fsync_dir` the last; :func:`toma.store.embedded.journal.atomic_write`
does both for the store's snapshots, which replace their old version.
"""

from __future__ import annotations

import os
from pathlib import Path


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
