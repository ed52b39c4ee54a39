"""A throwaway PostgreSQL server on 127.0.0.1 for the tests, and a fresh database per test.

Debian's ``postgresql`` package (installed by scripts/test) gives ``initdb`` and
``postgres`` under /usr/lib/postgresql/N/bin. Neither runs as root, so as root the
server runs as the unprivileged ``postgres`` user, in a directory of
:func:`tempfile.mkdtemp` (pytest's tmp_path is 0700 root), with its socket there
too, fsync off: the data is thrown away.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

HOST = "127.0.0.1"
START_TIMEOUT = 30.0


def _bin_dir() -> Path:
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/postgres"), key=lambda p: int(p.parts[-3])
    )
    if not found:
        raise RuntimeError(
            "PostgreSQL is not installed: run scripts/test (apt-get install postgresql)"
        )
    return found[-1].parent


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        return int(probe.getsockname()[1])


class PgServer:
    """One server for the session: :meth:`database` gives a fresh database's DSN."""

    def __init__(self) -> None:
        self.bin = _bin_dir()
        self.base = Path(tempfile.mkdtemp(prefix="toma-pg-"))
        self.port = _free_port()
        self._as: dict[str, Any] = {"cwd": "/", "check": True, "capture_output": True}
        if os.geteuid() == 0:
            shutil.chown(self.base, "postgres", "postgres")
            self._as.update(user="postgres", group="postgres", extra_groups=[])
        data = self.base / "data"
        subprocess.run(
            [
                self.bin / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "-E", "UTF8",
                "--locale=C.UTF-8", "--no-sync", "--no-instructions",
            ],
            **self._as,
        )  # fmt: skip
        log = (self.base / "server.log").open("w")
        kwargs = {k: v for k, v in self._as.items() if k not in ("check", "capture_output")}
        self.proc = subprocess.Popen(
            [
                self.bin / "postgres", "-D", data, "-h", HOST, "-p", str(self.port),
                "-k", self.base, "-c", "fsync=off", "-c", "synchronous_commit=off",
                "-c", "full_page_writes=off", "-c", "max_connections=200",
            ],
            stdout=log, stderr=subprocess.STDOUT, **kwargs,
        )  # fmt: skip
        log.close()
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg.connect(self.dsn("postgres"), connect_timeout=2).close()
                break
            except psycopg.OperationalError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    self.stop()
                    raise
                time.sleep(0.05)

    def dsn(self, dbname: str) -> str:
        return f"host={HOST} port={self.port} user=postgres dbname={dbname}"

    @contextmanager
    def database(self) -> Iterator[str]:
        name = "t_" + uuid.uuid4().hex[:12]
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        try:
            yield self.dsn(name)
        finally:
            with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
                conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.base, ignore_errors=True)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole test session."""
    server = PgServer()
    try:
        yield server
    finally:
        server.stop()


def progress(store: Any) -> list[tuple[object, ...]]:
    """What the progress index of a :class:`~toma.store.postgres.PgStore` holds, in order."""
    with store._conn() as conn:
        rows: list[tuple[object, ...]] = conn.execute(
            "SELECT contact, sequence, enrolled, receives, enrolled_at, anchor, anchor_step, since,"
            " retry_at, paced_at"
            " FROM toma_progress ORDER BY contact, sequence"
        ).fetchall()
    return rows


def rebuilt(store: Any) -> list[tuple[object, ...]]:
    """The progress index as a rebuild from the documents makes it."""
    with store._conn() as conn:
        conn.execute("SELECT toma_progress_rebuild()")
    return progress(store)
