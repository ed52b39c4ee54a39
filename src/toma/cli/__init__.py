"""The ``toma`` command line: parse, call the library, print.

The commands live in one module per group (``contacts``, ``invoices`` …);
this module holds the root group and what they share.

Each command is a few lines over a library function. A :class:`TomaError`
becomes one or two lines on stderr and exit status 1 (2 for usage errors,
which click handles); lists and reports take ``--json``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TypeVar

import click

from toma.config import Config, find_config, load_config
from toma.errors import TomaError
from toma.logs import configure as configure_logging
from toma.store import Store, open_configured
from toma.timeutil import parse_moment

F = TypeVar("F", bound=Callable[..., Any])


class Context:
    """What every command may need, loaded on first use."""

    def __init__(self, config_option: str | None) -> None:
        self.config_path = find_config(config_option)
        self._config: Config | None = None

    @property
    def config(self) -> Config:
        if self._config is None:
            self._config = load_config(self.config_path)
        return self._config

    @contextmanager
    def store(self) -> Iterator[Store]:
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
    return parse_moment(now_text) if now_text else datetime.now(UTC)


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False, default=str))


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


@click.group(cls=TomaGroup)
@click.option(
    "--config",
    "config_option",
    metavar="PATH",
    envvar="TOMA_CONFIG",
    help="The project's config.toml (else $TOMA_CONFIG, else ./config.toml).",
)
@click.option("-v", "--verbose", is_flag=True, help="Log debugging detail.")
@click.version_option(package_name="toma")
@click.pass_context
def main(ctx: click.Context, config_option: str | None, verbose: bool) -> None:
    """toma keeps you in touch with the people you already know.

    \b
    Start with:
        toma init my-project && cd my-project && toma check
    """
    configure_logging(verbose=verbose)
    ctx.obj = Context(config_option)


def _register() -> None:
    """Import the command modules: each adds its commands to :func:`main`."""
    import toma.cli.outbox  # noqa: F401
    from toma.cli import contacts, inbox, invoices, newsletters, project, sending  # noqa: F401
    from toma.cli import store as _store  # noqa: F401


_register()
