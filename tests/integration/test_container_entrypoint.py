"""contrib/docker-entrypoint.sh, run as the container runs it, outside a container."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ENTRYPOINT = ROOT / "contrib" / "docker-entrypoint.sh"
NOW = "2026-03-04T15:00:00+00:00"  # a Wednesday afternoon: the samples have mail due


def entrypoint(project: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    bin_dir = str(Path(sys.executable).parent)
    return subprocess.run(
        ["/bin/sh", str(ENTRYPOINT), *args],
        env={
            **os.environ,
            "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "TOMA_PROJECT": str(project),
            "TOMA_PYTHON": sys.executable,
            **env,
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_first_start_writes_a_project_then_a_tick_runs_and_the_health_is_good(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    first = entrypoint(project)
    assert first.returncode == 78
    assert "edit config.toml" in first.stderr
    assert (project / "config.toml").is_file()

    tick = entrypoint(project, "run", "--once", "--json", "--now", NOW)
    assert tick.returncode == 0, tick.stderr
    assert json.loads(tick.stdout)["sent"] >= 1

    assert entrypoint(project, "healthcheck").returncode == 0
    checked = entrypoint(project, "check")
    assert checked.returncode == 0, checked.stderr


def test_the_health_is_bad_when_the_store_cannot_be_read(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    entrypoint(project)
    entrypoint(project, "run", "--once", "--now", NOW)
    for snapshot in (project / "var" / "data").glob("snapshot-*.json"):
        snapshot.write_text("{ torn")
    assert entrypoint(project, "healthcheck").returncode == 1


def test_the_health_follows_a_health_url_when_one_is_given(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    # Nothing listens on port 9 of 127.0.0.1 (discard): the check fails, it does not hang.
    down = entrypoint(project, "healthcheck", TOMA_HEALTH_URL="http://127.0.0.1:9/healthz")
    assert down.returncode != 0

    class Healthz(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/healthz" else 404)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Healthz)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        up = entrypoint(project, "healthcheck", TOMA_HEALTH_URL=f"{base}/healthz")
        assert up.returncode == 0, up.stderr
        missing = entrypoint(project, "healthcheck", TOMA_HEALTH_URL=f"{base}/other")
        assert missing.returncode != 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
