"""``toma auth``: sign in to mail servers that use OAuth2, and see the sign-ins."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import click

from toma.cli import Context, json_option, main, pass_context, print_json


def _now() -> datetime:
    return datetime.now(UTC)


@main.group()
def auth() -> None:
    """OAuth2 sign-in for [smtp] and [imap] with auth = "xoauth2" or "oauthbearer"."""


@auth.command("login")
@click.argument("account", required=False)
@pass_context
def auth_login(ctx: Context, account: str | None) -> None:
    """Sign in (device code, else a browser on this machine) and keep the refresh token.

    \b
    Example:
        toma auth login                       # every OAuth2 account in config.toml
        toma auth login alex@example.com
    """
    from toma.auth.login import choose, sign_in

    for oauth2 in choose(ctx.config, account):
        token = sign_in(oauth2, show=click.echo, clock=_now, wait=time.sleep)
        click.echo(
            f"signed in: {oauth2.account}; access until {token.expires_at:%Y-%m-%d %H:%M} UTC, "
            f"refreshed by itself; kept in {oauth2.token_file}"
        )


@auth.command("status")
@json_option
@pass_context
def auth_status(ctx: Context, as_json: bool) -> None:
    """Which OAuth2 accounts are signed in, and until when the access token lasts.

    \b
    Example:
        toma auth status --json
    """
    from toma.auth.login import status

    found = status(ctx.config)
    if as_json:
        print_json(found)
        return
    if not found:
        click.echo("no server signs in with OAuth2")
    for item in found:
        if item["signed_in"]:
            click.echo(
                f"{item['account']}: signed in; access token until {item['access_expires_at']}"
            )
        else:
            click.echo(f"{item['account']}: not signed in: run `toma auth login {item['account']}`")
