"""``toma backup`` and ``toma restore``: the whole data directory as one archive.

Theory of operation
-------------------
A backup is a gzipped tar holding ``manifest.json`` and ``data/NAME`` for every
file of the data directory: the snapshot, the journal up to its last commit,
the unsubscribe key (without it every unsubscribe link already sent stops
working) and whatever else lives there. The files are pinned under the store's
lock (:meth:`~toma.store.embedded.tinydb.TinyStore.pinned_files`), which is held
only while they are opened, so a running daemon waits a few milliseconds, not
for the archive to be written. The archive is written beside its destination
under a temporary name, fsynced and renamed: a crash leaves the old backup or
the new one, never half of one.

The manifest names the schema version, the generation and the SHA-256 and size
of each file. A restore trusts nothing in the archive: members other than
plain files named ``manifest.json`` or ``data/NAME`` (no directories, links,
devices, ``..`` or absolute names), files the manifest does not list or lists
with another digest, and archives larger than :data:`MAX_RESTORE_BYTES` are
refused before anything is written where the store lives. A message that
was being sent when the backup was taken becomes ``unknown`` (see
:func:`in_doubt_after_restore`). The files are
unpacked into a new directory beside the data directory, opened as a store
(which reads every line of snapshot and journal), and only then renamed into
place. A restore never writes over an existing store.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import secrets
import shutil
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import IO, Any, BinaryIO

from toma.core.outbox import MessageState, OutboxRecord, advance
from toma.durable import fsync_dir
from toma.errors import StoreError
from toma.store.base import MESSAGES
from toma.store.embedded.tinydb import TinyStore
from toma.store.records import outbox

FORMAT = "toma-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
DATA_PREFIX = "data/"
MAX_RESTORE_BYTES = 8 << 30  # far above any store a consultant keeps; a tar bomb is not one
_CHUNK = 1 << 20
RESTORED_IN_FLIGHT = "being sent when the backup was taken: it may have gone after; never resent"


@dataclass(frozen=True)
class BackupInfo:
    """What a backup holds, as its manifest says."""

    file: Path
    created: str
    schema_version: int
    generation: int
    files: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "file": str(self.file),
            "created": self.created,
            "schema_version": self.schema_version,
            "generation": self.generation,
            "files": self.files,
            "bytes": sum(int(f["size"]) for f in self.files.values()),
        }


def _limited(handle: BinaryIO, size: int) -> Iterator[bytes]:
    handle.seek(0)
    left = size
    while left > 0:
        chunk = handle.read(min(_CHUNK, left))
        if not chunk:
            raise StoreError(f"{handle.name} ended {left} bytes early while being backed up")
        left -= len(chunk)
        yield chunk


def backup(store: TinyStore, destination: Path, *, now: datetime, version: str) -> BackupInfo:
    """Write a backup of ``store``'s data directory to ``destination`` (replaced whole)."""
    destination = destination.absolute()
    temporary = destination.with_name(f".{destination.name}.{secrets.token_hex(6)}.tmp")
    files: dict[str, dict[str, Any]] = {}
    try:
        with store.pinned_files() as pinned:
            generation, schema = store.generation, store.schema_version
            fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
                for item in pinned:
                    digest = hashlib.sha256()
                    buffer = io.BytesIO()
                    for chunk in _limited(item.handle, item.size):
                        digest.update(chunk)
                        buffer.write(chunk)
                    files[item.name] = {"size": item.size, "sha256": digest.hexdigest()}
                    buffer.seek(0)
                    tar.addfile(_member(DATA_PREFIX + item.name, item.size, now), buffer)
                manifest = {
                    "format": FORMAT,
                    "format_version": FORMAT_VERSION,
                    "toma_version": version,
                    "created": now.isoformat(timespec="seconds"),
                    "schema_version": schema,
                    "generation": generation,
                    "files": files,
                }
                text = json.dumps(manifest, indent=2, sort_keys=True).encode()
                tar.addfile(_member(MANIFEST, len(text), now), io.BytesIO(text))
                raw.flush()
                os.fsync(raw.fileno())
        temporary.replace(destination)
        fsync_dir(destination.parent)
    except OSError as exc:
        raise StoreError(f"cannot write the backup: {exc.strerror}", file=destination) from exc
    finally:
        temporary.unlink(missing_ok=True)
    return BackupInfo(destination, str(manifest["created"]), schema, generation, files)


def _member(name: str, size: int, now: datetime) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = size, 0o600, int(now.timestamp())
    return info


# -- restore --------------------------------------------------------------------------


def _plain_name(member: tarfile.TarInfo, archive: Path) -> str:
    name = member.name
    if not member.isfile():
        raise StoreError(f"the backup holds {name!r}, which is not a plain file", file=archive)
    if name == MANIFEST:
        return name
    base = name.removeprefix(DATA_PREFIX)
    if (
        base == name
        or not base
        or "/" in base
        or "\\" in base
        or base.startswith(".")
        or "\x00" in base
    ):
        raise StoreError(f"the backup holds a file named {name!r}: refused", file=archive)
    return name


MAX_MANIFEST_BYTES = 1 << 20


def unpack(archive: Path, folder: Path, *, limit: int = MAX_RESTORE_BYTES) -> BackupInfo:
    """Write the data files of ``archive`` into ``folder`` (new files), checked as they stream.

    Nothing is held in memory but the manifest; every member is refused or
    checked against it (see the module docstring) before the caller uses ``folder``.
    """
    digests: dict[str, tuple[int, str]] = {}
    manifest: bytes | None = None
    total = 0
    try:
        with tarfile.open(archive, mode="r:gz") as tar:
            for member in tar:
                name = _plain_name(member, archive)
                total += member.size
                if total > limit:
                    raise StoreError("the backup is larger than any store: refused", file=archive)
                handle = tar.extractfile(member)
                if handle is None:  # pragma: no cover - isfile() was checked
                    raise StoreError(f"cannot read {name!r}", file=archive)
                if name == MANIFEST:
                    if manifest is not None or member.size > MAX_MANIFEST_BYTES:
                        raise StoreError("the backup's manifest.json is refused", file=archive)
                    manifest = handle.read()
                    continue
                base = name.removeprefix(DATA_PREFIX)
                if base in digests:
                    raise StoreError(f"the backup holds {name!r} twice", file=archive)
                digests[base] = _stream(handle, folder / base)
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise StoreError(f"not a readable toma backup ({exc})", file=archive) from None
    except OSError as exc:
        raise StoreError(f"cannot read the backup: {exc.strerror or exc}", file=archive) from None
    return _check_manifest(archive, manifest, digests)


def _stream(source: IO[bytes], target: Path) -> tuple[int, str]:
    digest, size = hashlib.sha256(), 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := source.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return size, digest.hexdigest()


def read_backup(archive: Path) -> tuple[BackupInfo, dict[str, bytes]]:
    """The manifest and the files of ``archive``, checked (for inspection: held in memory)."""
    with tempfile.TemporaryDirectory() as folder:
        info = unpack(archive, Path(folder))
        return info, {name: (Path(folder) / name).read_bytes() for name in info.files}


def _check_manifest(
    archive: Path, text: bytes | None, digests: dict[str, tuple[int, str]]
) -> BackupInfo:
    try:
        manifest = json.loads(text if text is not None else b"")
    except ValueError:
        raise StoreError("the backup has no readable manifest.json", file=archive) from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise StoreError("not a toma backup (its manifest says otherwise)", file=archive)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise StoreError(
            f"backup format {manifest.get('format_version')!r}: this toma reads "
            f"{FORMAT_VERSION}; restore with the toma that made it",
            file=archive,
        )
    files = manifest.get("files")
    if not isinstance(files, dict):
        raise StoreError("the backup's manifest lists no files", file=archive)
    if set(digests) != set(files):
        raise StoreError(
            "the backup's files are not those its manifest lists "
            f"(extra: {sorted(set(digests) - set(files))}, "
            f"missing: {sorted(set(files) - set(digests))})",
            file=archive,
        )
    for name, entry in files.items():
        size, digest = digests[name]
        if not isinstance(entry, dict) or (entry.get("sha256"), entry.get("size")) != (
            digest,
            size,
        ):
            raise StoreError(f"{name} in the backup is damaged (checksum differs)", file=archive)
    return BackupInfo(
        archive,
        str(manifest.get("created")),
        int(manifest.get("schema_version", 0)),
        int(manifest.get("generation", 0)),
        files,
    )


def in_doubt_after_restore(records: list[OutboxRecord], *, at: datetime) -> list[OutboxRecord]:
    """Every ``sending`` record of a restored backup made ``unknown``, the rest as they are.

    A message being sent when the backup was taken may have gone after it,
    even one not yet handed to the server then (the daemon went on): unlike
    after a crash of the daemon itself, nobody can tell, so it is never resent
    on its own; ``toma outbox release`` sends it once the owner has checked.
    """
    return [
        advance(record, MessageState.UNKNOWN, at=at, detail=RESTORED_IN_FLIGHT)
        if record.state is MessageState.SENDING
        else record
        for record in records
    ]


def settle_in_flight(store: TinyStore, *, now: datetime) -> int:
    """Apply :func:`in_doubt_after_restore` to ``store``; how many became ``unknown``."""
    records = outbox.records(store, state=MessageState.SENDING)
    settled = in_doubt_after_restore(records, at=now)
    with store.transaction() as tx:
        for record in settled:
            tx.put(MESSAGES, record.key, record.to_doc())
    return len(settled)


def restore(archive: Path, data_dir: Path, *, now: datetime) -> BackupInfo:
    """Unpack ``archive`` as the store in ``data_dir``, which must not hold one yet."""
    data_dir = data_dir.absolute()
    if data_dir.exists() and (not data_dir.is_dir() or any(data_dir.iterdir())):
        raise StoreError(
            "the data directory is not empty: move it away first (a restore never writes "
            "over a store)",
            file=data_dir,
        )
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = data_dir.with_name(f".{data_dir.name}.restore-{secrets.token_hex(6)}")
    try:
        staging.mkdir(mode=0o700)
        info = unpack(archive, staging)
        fsync_dir(staging)
        # Opening reads every snapshot document and journal line: a store that
        # does not open is not moved into place.
        with TinyStore(staging) as store:
            settle_in_flight(store, now=now)
        for lock in staging.glob("*.lock"):
            lock.unlink()
        if data_dir.exists():
            data_dir.rmdir()
        staging.rename(data_dir)
        fsync_dir(data_dir.parent)
    except OSError as exc:
        raise StoreError(f"cannot restore: {exc.strerror}", file=data_dir) from exc
    finally:
        with contextlib.suppress(FileNotFoundError):
            shutil.rmtree(staging)
    return BackupInfo(data_dir, info.created, info.schema_version, info.generation, info.files)
