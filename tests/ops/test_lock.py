"""requirements.lock (scripts/demo and the container install from it) pins every runtime
dependency pyproject.toml names: a dependency added without `scripts/lock` fails here,
not in the demo or the image."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _name(requirement: str) -> str:
    bare = re.split(r"[\s<>=!~;\[]", requirement, maxsplit=1)[0]
    return re.sub(r"[-_.]+", "-", bare).lower()


def test_the_lock_pins_every_runtime_dependency_with_hashes() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    wanted = {_name(requirement) for requirement in project["dependencies"]}
    lock = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pinned = {_name(line) for line in re.findall(r"^([A-Za-z0-9][\w.-]*)==", lock, flags=re.M)}
    assert wanted - pinned == set(), "run scripts/lock"
    blocks = re.split(r"\n(?=[A-Za-z0-9])", lock.strip())
    assert all("--hash=sha256:" in block for block in blocks)
