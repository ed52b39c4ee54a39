"""Ordinary files gone wrong, through the command line: one clear line each, no traceback."""

from __future__ import annotations

from pathlib import Path

from .conftest import Invoke


def test_check_names_a_config_nested_5000_deep(project: Path, toma: Invoke) -> None:
    """tomllib raised RecursionError through `toma check`: a traceback of a thousand frames."""
    config = project / "config.toml"
    config.write_text(config.read_text() + "\nx = " + "[" * 5000 + "]" * 5000 + "\n")
    result = toma("check")
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    assert f"{config}: not usable TOML: arrays or tables are nested too deeply" in result.output


def test_every_command_names_a_config_nested_5000_deep(project: Path, toma: Invoke) -> None:
    config = project / "config.toml"
    config.write_text("x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
    result = toma("status")
    assert result.exit_code == 1
    assert result.output.strip().splitlines() == [
        f"toma: {config}: not usable TOML: arrays or tables are nested too deeply"
    ]


def test_check_reports_huge_durations_with_file_line_and_key(project: Path, toma: Invoke) -> None:
    """They passed `toma check`, then crashed every tick (or the daemon at start)."""
    sequence = project / "sequences" / "new-acquaintance.toml"
    text = sequence.read_text()
    first_after = text.split('after = "', 1)[1].split('"', 1)[0]
    sequence.write_text(text.replace(f'after = "{first_after}"', 'after = "99999999999999y"', 1))
    result = toma("check")
    assert result.exit_code == 1
    line = next(
        n for n, row in enumerate(sequence.read_text().splitlines(), 1) if "99999999999999y" in row
    )
    assert f"{sequence}:{line}: steps[0].after: '99999999999999y' is too long" in result.output

    config = project / "config.toml"
    text = config.read_text()
    config.write_text(text.replace('tick_every = "1min"', 'tick_every = "999999999y"'))
    result = toma("check")
    assert result.exit_code == 1
    assert "daemon.tick_every: tick_every must be between 1s and 1d" in result.output


def test_check_reports_a_missing_ca_file(project: Path, toma: Invoke) -> None:
    config = project / "config.toml"
    smtp = '\n[smtp]\nhost = "mail.example.com"\nca_file = "ca.pem"\n'
    config.write_text(config.read_text() + smtp)
    result = toma("check")
    assert result.exit_code == 1
    assert f"smtp.ca_file: no such file: {project / 'ca.pem'}" in result.output
