"""The ``toma`` command line: parse, call the library, print.

The commands live in one module per group (``contacts``, ``invoices`` …);
this module holds the root group and what they share.

Each command is a few lines over a library function. A :class:`TomaError`
becomes one or two lines on stderr and exit status 1 (2 for usage errors,
which click handles); lists and reports take ``--json``.

**Registration.** :data:`COMMANDS` names every top-level command, the module
that defines it and its line in ``toma --help``. A command's module is
imported only when that command runs, so ``toma --version`` and ``toma
--help`` start in a fraction of the time the whole library takes to import
(``bench/cli_start.py``). A new command module adds one row per command to
:data:`COMMANDS`; ``tests/cli/test_cli_registry.py`` fails, naming the row to
add, when a module's commands and the table disagree. (A module imported in
:func:`_register` but missing from the table still runs, it only goes
unlisted in ``--help``.) Command modules import what they need inside the
command where it is heavy.
"""

from __future__ import annotations

import functools
import importlib
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import click

from toma._version import __version__
from toma.errors import TomaError

if TYPE_CHECKING:
    from toma.config import Config
    from toma.store import Store

F = TypeVar("F", bound=Callable[..., Any])

# name -> (the module that defines it, its line in `toma --help`); see the module docstring.
COMMANDS: dict[str, tuple[str, str]] = {
    "auth": (
        "toma.cli.auth",
        'OAuth2 sign-in for [smtp] and [imap] with auth = "xoauth2" or "oauthbearer".',
    ),
    "backup": (
        "toma.cli.ops",
        "Write the whole data directory to FILE (a .tar.gz), safely while the daemon runs.",
    ),
    "check": (
        "toma.cli.project",
        "Validate the config, sequences and templates, rendering each for every contact.",
    ),
    "contacts": ("toma.cli.contacts", "Add, import, list and look after contacts."),
    "enroll": ("toma.cli.sending", "Enrol a contact in SEQUENCE (a sequence's name) by hand."),
    "export": (
        "toma.cli.ops",
        "Contacts, conversations and invoices as JSON or CSV, for a spreadsheet or another tool.",
    ),
    "inbox": (
        "toma.cli.inbox",
        "Read the inbox: replies, auto-replies, bounces, unsubscribe requests.",
    ),
    "init": (
        "toma.cli.project",
        "Create a working project in FOLDER: config, sequences, templates, sample contacts.",
    ),
    "invoices": ("toma.cli.invoices", "Invoices: add, import, list; mark paid or void."),
    "log": (
        "toma.cli.inbox",
        "The whole conversation with one contact, both directions, in time order.",
    ),
    "migrate": (
        "toma.cli.ops",
        "Bring the data store to this toma's schema; takes a backup first.",
    ),
    "newsletter": (
        "toma.cli.newsletters",
        "Newsletter issues: a proof to yourself, then the send.",
    ),
    "outbox": ("toma.cli.outbox", "The messages toma means to send or has sent, each by its key."),
    "plan": ("toma.cli.sending", "What goes to whom, and when: a calendar of the coming days."),
    "preview": (
        "toma.cli.project",
        "Print the exact message TEMPLATE would send to a contact (RFC 5322).",
    ),
    "restore": (
        "toma.cli.ops",
        "Restore a backup FILE as this project's data directory, which must be empty or absent.",
    ),
    "run": ("toma.cli.sending", "The daemon: tick on a schedule — plan, send, record."),
    "serve": (
        "toma.cli.sending",
        "Serve the dashboard and the one-click unsubscribe links, without ticking.",
    ),
    "store": (
        "toma.cli.store",
        "The store itself: moving it between the embedded store and PostgreSQL.",
    ),
    "status": (
        "toma.cli.sending",
        "What the daemon did last, what is queued, what failed, what is unknown.",
    ),
    "unenroll": (
        "toma.cli.sending",
        "Stop a contact's enrolment in SEQUENCE; its tag will not enrol them again.",
    ),
}


class Context:
    """What every command may need, loaded on first use."""

    def __init__(self, config_option: str | None) -> None:
        from toma.config import find_config

        self.config_path = find_config(config_option)
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            from toma.config import load_config

            self._config = load_config(self.config_path)
        return self._config

    @contextmanager
    def store(self) -> Iterator[Store]:
        from toma.store import open_configured

        store = open_configured(self.config)
        try:
            yield store
        finally:
            store.close()


pass_context = click.make_pass_decorator(Context)


def json_option(func: F) -> F:
    return click.option("--json", "as_json", is_flag=True, help="Print JSON for scripts.")(func)


def now_option(func: F) -> F:
    return click.option(
        "--now",
        "now_text",
        metavar="ISO",
        help="Act as if it were this moment (ISO 8601 with a UTC offset).",
    )(func)


def resolve_now(now_text: str | None) -> datetime:
    if not now_text:
        return datetime.now(UTC)
    from toma.timeutil import parse_moment

    return parse_moment(now_text)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


def problem_json(problem: TomaError) -> dict[str, Any]:
    """A problem for ``--json``: the message and where it is, each as a field."""
    return {
        "message": problem.message,
        "file": problem.file,
        "line": problem.line,
        "key": problem.key,
        "contact": problem.contact,
    }


def fail_on_toma_error(func: F) -> F:
    """Turn a TomaError into one or two lines and exit status 1."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except TomaError as exc:
            click.echo(f"toma: {exc}", err=True)
            sys.exit(1)

    return wrapper  # type: ignore[return-value]


class TomaGroup(click.Group):
    """A group whose every command reports TomaError briefly."""

    def command(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Command]:
        decorator = super().command(*args, **kwargs)

        def wrap(func: Callable[..., Any]) -> click.Command:
            command: click.Command = decorator(fail_on_toma_error(func))
            return command

        return wrap

    def group(  # type: ignore[override]
        self, *args: Any, **kwargs: Any
    ) -> Callable[[Callable[..., Any]], click.Group]:
        kwargs.setdefault("cls", TomaGroup)
        decorator: Callable[[Callable[..., Any]], click.Group] = super().group(*args, **kwargs)
        return decorator


class RootGroup(TomaGroup):
    """The ``toma`` group: imports a command's module when that command is asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*COMMANDS, *self.commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands:
            if cmd_name in COMMANDS:
                importlib.import_module(COMMANDS[cmd_name][0])
            else:
                _register()  # a module not in the table yet still gets its commands run
        return self.commands.get(cmd_name)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The list of commands, from :data:`COMMANDS`: no module is imported for it."""
        names = self.list_commands(ctx)
        if not names:
            return
        width = formatter.width - 6 - max(len(name) for name in names)
        rows = []
        for name in names:
            if name in COMMANDS:
                short = click.Command(name, help=COMMANDS[name][1]).get_short_help_str(width)
            else:
                short = self.commands[name].get_short_help_str(width)
            rows.append((name, short))
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=RootGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    envvar="TOMA_CONFIG",
    help="The project's config.toml (else $TOMA_CONFIG, else ./config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.version_option(__version__, prog_name="toma")
@click.pass_context
def main(ctx: click.Context, config_option: str | None, verbose: bool) -> None:
    """toma keeps you in touch with the people you already know.

    \b
    Start with:
        toma init my-project && cd my-project && toma check
    """
    from toma.logs import configure as configure_logging

    configure_logging(verbose=verbose)
    ctx.obj = Context(config_option)


def _register() -> None:
    """Import every command module: each adds its commands to :func:`main`.

    Not called at start (see the module docstring): by the tests and for a
    command name not in :data:`COMMANDS`.
    """
    for module in sorted({module for module, _help in COMMANDS.values()}):
        importlib.import_module(module)
    import toma.cli.outbox  # noqa: F401
    from toma.cli import contacts, inbox, invoices, newsletters, project, sending  # noqa: F401
