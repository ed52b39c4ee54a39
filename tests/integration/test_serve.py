"""`toma serve`: the one-click links work under cron, beside `toma run --once`."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from toma.config import load_config
from toma.mail.unsubscribe import unsubscriber
from toma.store import CONTACTS, open_store
from toma.store.records.contacts import suppression_of

from .conftest import free_port
from .projects import make_project

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)


def stored(config: Path, table: str, key: str) -> dict[str, object] | None:
    store = open_store(config.parent / "var" / "data")
    try:
        return store.get(table, key)
    finally:
        store.close()


def test_serve_records_a_one_click_unsubscribe_beside_cron_and_stops_on_sigterm(
    tmp_path: Path,
) -> None:
    port = free_port()
    config = make_project(tmp_path, contacts=3, now=NOW)
    config.write_text(
        config.read_text() + '\n[unsubscribe]\nbase_url = "https://news.example.com/toma"\n'
    )
    toma = [sys.executable, "-m", "toma", "--config", str(config)]
    server = subprocess.Popen(
        [*toma, "serve", "--listen", f"127.0.0.1:{port}"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()  # printed once the port is bound
        assert ready.startswith(f"Serving unsubscribe links on http://127.0.0.1:{port}"), ready + (
            server.stderr.read() if server.poll() is not None and server.stderr else ""
        )

        # Cron's tick runs meanwhile: serve holds no lock.
        tick = subprocess.run(
            [*toma, "run", "--once", "--now", NOW.isoformat()],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert tick.returncode == 0, tick.stderr

        url = unsubscriber(load_config(config)).url("person1@example.org")
        assert url is not None and url.startswith("https://news.example.com/toma/u/")
        # The reverse proxy passes the path on as it is.
        local = url.replace("https://news.example.com", f"http://127.0.0.1:{port}")
        request = urllib.request.Request(local, data=b"List-Unsubscribe=One-Click", method="POST")
        with urllib.request.urlopen(request, timeout=10) as response:
            assert response.status == 200
            assert b"unsubscribed" in response.read()
        # Recorded before the answer: in the store as soon as the POST returns.
        contact = stored(config, CONTACTS, "person1@example.org")
        assert contact is not None and contact["status"] == "unsubscribed"
        store = open_store(tmp_path / "var" / "data")
        try:
            assert suppression_of(store, "person1@example.org") is not None
        finally:
            store.close()
        other = stored(config, CONTACTS, "person0@example.org")
        assert other is not None and other["status"] == "active"
    finally:
        server.send_signal(signal.SIGTERM)
        started = time.monotonic()
        _out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert time.monotonic() - started < 10
    assert "Traceback" not in err


def test_serve_without_a_base_url_serves_the_dashboard(tmp_path: Path) -> None:
    """No public links to answer: serve still serves the dashboard (issue 16)."""
    port = free_port()
    config = make_project(tmp_path, contacts=1, now=NOW)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "toma",
            "--config",
            str(config),
            "serve",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        ready = server.stdout.readline()
        assert ready.startswith(f"Serving the dashboard at http://127.0.0.1:{port}/"), ready
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/contacts", timeout=10) as page:
            assert page.status == 200
            assert b"person0@example.org" in page.read()
    finally:
        server.send_signal(signal.SIGTERM)
        _out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
