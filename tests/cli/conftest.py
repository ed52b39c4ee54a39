"""A project made by `toma init`, and a runner for the command line against it."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from toma.cli import main

Invoke = Callable[..., Result]


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "project"
    result = CliRunner().invoke(main, ["init", str(folder), "--now", "2026-11-25T10:00:00+00:00"])
    assert result.exit_code == 0, result.output
    return folder


@pytest.fixture
def toma(project: Path) -> Invoke:
    """Run `toma --config PROJECT/config.toml ARGS…`."""

    def invoke(*args: str, input: str | None = None) -> Result:
        return CliRunner().invoke(
            main,
            ["--config", str(project / "config.toml"), *args],
            input=input,
            catch_exceptions=False,
        )

    return invoke
