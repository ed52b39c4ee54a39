"""The command table, -h, and a start that imports only what a command needs."""

from __future__ import annotations

import json
import subprocess
import sys

from click.testing import CliRunner

from toma.cli import COMMANDS, _register, main

HEAVY = ("toma.config", "toma.store", "toma.daemon", "toma.mail", "jinja2", "rich", "aiosmtplib")


def test_the_table_names_every_command_its_module_and_its_help_line() -> None:
    _register()
    for name, command in main.commands.items():
        assert name in COMMANDS, (
            f"add to COMMANDS in toma/cli/__init__.py: "
            f'"{name}": ("{command.callback.__module__ if command.callback else "?"}", '
            f"{command.get_short_help_str(limit=1000)!r}),"
        )
        module, line = COMMANDS[name]
        assert command.callback is not None
        assert command.callback.__module__ == module, name
        assert command.get_short_help_str(limit=1000) == line, name
    assert set(COMMANDS) <= set(main.commands), set(COMMANDS) - set(main.commands)


def loaded_after(*args: str) -> tuple[str, list[str]]:
    """What `toma ARGS` prints, and which toma and library modules it imported."""
    code = (
        "import sys, json, io, contextlib\n"
        "from toma.cli import main\n"
        "out = io.StringIO()\n"
        "with contextlib.redirect_stdout(out):\n"
        "    try:\n"
        f"        main({list(args)!r})\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(json.dumps([out.getvalue(), sorted(sys.modules)]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    text, modules = json.loads(done.stdout)
    return text, modules


def test_version_and_help_import_none_of_the_library() -> None:
    for args in (["--version"], ["--help"], ["-h"]):
        text, modules = loaded_after(*args)
        assert text.strip(), args
        heavy = [m for m in modules if m.startswith(HEAVY)]
        assert heavy == [], (args, heavy)
        assert not [m for m in modules if m.startswith("toma.cli.")], args


def test_help_lists_every_command() -> None:
    text, _modules = loaded_after("--help")
    for name in COMMANDS:
        assert f"  {name} " in text, name


def test_a_command_imports_only_its_own_module() -> None:
    _text, modules = loaded_after("backup", "--help")
    assert "toma.cli.ops" in modules
    assert "toma.cli.newsletters" not in modules


def test_dash_h_is_help_everywhere() -> None:
    runner = CliRunner()
    for args in (
        ["-h"],
        ["status", "-h"],
        ["contacts", "list", "-h"],
        ["newsletter", "send", "-h"],
    ):
        result = runner.invoke(main, args)
        assert result.exit_code == 0, (args, result.output)
        assert result.output.startswith("Usage: "), args


def test_version() -> None:
    from toma._version import __version__

    result = CliRunner().invoke(main, ["--version"])
    assert result.output == f"toma, version {__version__}\n"


def test_shell_completion_completes_commands_and_options() -> None:
    toma = str(__import__("pathlib").Path(sys.executable).with_name("toma"))
    script = subprocess.run(
        [toma],
        env={"_TOMA_COMPLETE": "bash_source", "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "_toma_completion" in script.stdout
    words = subprocess.run(
        [toma],
        env={
            "_TOMA_COMPLETE": "bash_complete",
            "COMP_WORDS": "toma ba",
            "COMP_CWORD": "1",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert words.stdout.split() == ["plain,backup"]
    options = subprocess.run(
        [toma],
        env={
            "_TOMA_COMPLETE": "bash_complete",
            "COMP_WORDS": "toma export --f",
            "COMP_CWORD": "2",
            "PATH": "/usr/bin:/bin",
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert "plain,--format" in options.stdout.split()
