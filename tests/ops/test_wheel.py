"""The wheel a user installs: built from a clean clone, installed into a fresh venv."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_a_wheel_from_a_clean_clone_installs_and_runs_a_tick(tmp_path: Path) -> None:
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    out = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(clone)],
        check=True,
    )
    [wheel] = out.glob("*.whl")
    assert wheel.name.startswith("toma_mail-")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith("/METADATA"))).decode()
    assert "toma/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert "License-Expression: MIT" in metadata
    assert "Name: toma-mail" in metadata

    done = subprocess.run(
        [str(ROOT / "scripts" / "wheel-smoke"), str(wheel)],
        capture_output=True,
        text=True,
        check=False,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.rstrip().endswith("wheel-smoke: ok")
    # The tick's summary is JSON (run --once --json): it sent the sample contacts' first mails.
    start = done.stdout.index("\n{\n")
    summary = json.loads(done.stdout[start : done.stdout.index("\n}\n", start) + 2])
    assert summary["sent"] >= 1
    assert summary["failed"] == 0
