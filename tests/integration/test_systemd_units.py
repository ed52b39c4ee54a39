"""contrib/: the systemd units verify, the system unit is hardened, Type=notify holds."""

from __future__ import annotations

import itertools
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

from toma.config import Smtp
from toma.sdnotify import Watchdog, notify

from .conftest import RecordingHandler
from .projects import make_project

ROOT = Path(__file__).resolve().parents[2]
CONTRIB = ROOT / "contrib"
UNITS = ("toma.service", "toma-once.service", "toma-once.timer")


def analyze() -> str:
    found = shutil.which("systemd-analyze")
    assert found, "systemd-analyze is missing: scripts/test installs the systemd package"
    return found


def installed_units(folder: Path) -> list[Path]:
    """The units as installed, ExecStart pointing at this toma (verify wants it executable)."""
    toma = Path(sys.executable).with_name("toma")
    paths = []
    for name in UNITS:
        text = (CONTRIB / name).read_text().replace("/opt/toma/bin/toma", str(toma))
        (folder / name).write_text(text)
        paths.append(folder / name)
    return paths


def test_systemd_analyze_verify_passes_on_every_unit(tmp_path: Path) -> None:
    done = subprocess.run(
        [analyze(), "verify", *map(str, installed_units(tmp_path))],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == "", done.stderr


def test_the_system_units_rate_ok_or_better_in_systemd_analyze_security(tmp_path: Path) -> None:
    installed_units(tmp_path)
    for unit in ("toma.service", "toma-once.service"):
        done = subprocess.run(
            [analyze(), "security", "--offline=true", str(tmp_path / unit)],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            cwd=tmp_path,
        )
        found = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", done.stdout)
        assert found, done.stdout + done.stderr
        score, rating = float(found.group(1)), found.group(2)
        assert rating in ("SAFE", "OK"), (unit, score, rating)
        assert score <= 2.0, (unit, score)


def test_the_daemon_tells_systemd_it_is_ready_and_then_stopping(tmp_path: Path) -> None:
    config = make_project(tmp_path / "project", contacts=1, now=datetime.now(UTC))
    address = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(60)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "toma", "--config", str(config), "run"],
            env={**os.environ, "NOTIFY_SOCKET": address},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        stopping = ""
        try:
            ready = server.recv(4096).decode()
            daemon.send_signal(signal.SIGTERM)
            stopping = server.recv(4096).decode()
        finally:
            if not stopping:
                daemon.kill()
            daemon.wait(timeout=60)
    assert ready.splitlines()[0] == "READY=1"
    assert ready.splitlines()[1].startswith("STATUS=ticking every ")
    assert stopping == "STOPPING=1"
    assert daemon.returncode == 0


@pytest.mark.slow
@pytest.mark.smtpd_options(data_delay=0.25)
def test_the_watchdog_is_pinged_all_through_a_long_tick(
    tmp_path: Path, smtp_config: Smtp, smtpd_handler: RecordingHandler
) -> None:
    """A tick of several seconds (a slow server) keeps pinging; no gap near WatchdogSec."""
    config = make_project(
        tmp_path / "project", smtp=smtp_config, contacts=40, now=datetime.now(UTC)
    )
    address = str(tmp_path / "notify")
    pings: list[float] = []
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(address)
        server.settimeout(60)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "toma", "--config", str(config), "run"],
            env={**os.environ, "NOTIFY_SOCKET": address, "WATCHDOG_USEC": "2000000"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            assert server.recv(4096).decode().startswith("READY=1")
            deadline = time.monotonic() + 60
            # The first tick starts right after READY=1: watch it until every message is in.
            while len(smtpd_handler.messages) < 40 and time.monotonic() < deadline:
                server.settimeout(max(0.1, deadline - time.monotonic()))
                if server.recv(4096) == b"WATCHDOG=1":
                    pings.append(time.monotonic())
        finally:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(timeout=60)
    assert len(smtpd_handler.messages) == 40
    assert pings[-1] - pings[0] >= 2.0, "the tick was too short to show anything"
    gaps = [later - earlier for earlier, later in itertools.pairwise(pings)]
    # WatchdogSec=2s: toma never lets 2 s pass, and pings about once a second, not more.
    assert max(gaps) < 1.9, gaps
    assert len(pings) <= (pings[-1] - pings[0]) / 0.9 + 2, gaps


def test_notify_reaches_an_abstract_socket_and_is_silent_without_one() -> None:
    name = f"toma-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        server.settimeout(5)
        assert notify("STATUS=x", {"NOTIFY_SOCKET": "@" + name})
        assert server.recv(100) == b"STATUS=x"
    assert not notify("READY=1", {})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "relative/path"})
    assert not notify("READY=1", {"NOTIFY_SOCKET": "/nonexistent/socket"})
    assert not Watchdog({}).enabled
    assert not Watchdog({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"}).enabled
    assert Watchdog({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}).interval == 0.5
