"""Every command is documented: in its --help with an explanation, and in the README."""

from __future__ import annotations

from pathlib import Path

import click
import pytest

from toma.cli import _register, main

_register()  # the commands are imported when they run; here all of them are wanted

README = (Path(__file__).parents[2] / "README.md").read_text(encoding="utf-8")


def commands(group: click.Group, prefix: str = "toma") -> list[tuple[str, click.Command]]:
    found: list[tuple[str, click.Command]] = []
    for name, command in sorted(group.commands.items()):
        path = f"{prefix} {name}"
        if isinstance(command, click.Group):
            found.extend(commands(command, path))
        else:
            found.append((path, command))
    return found


@pytest.mark.parametrize(("path", "command"), commands(main), ids=lambda v: str(v))
def test_command_is_documented(path: str, command: click.Command) -> None:
    assert command.help, f"{path} has no help text"
    words = path.split()
    # `toma contacts pause|resume|…` counts for each of the commands it lists.
    mentioned = path in README or any(
        f"{' '.join(words[:-1])} " in line and words[-1] in line for line in README.splitlines()
    )
    assert mentioned, f"{path} is not in the README"
