"""The errors of OAuth2 sign-in (drawn in :mod:`toma.errors`)."""

from __future__ import annotations

from toma.errors import TomaError


class AuthError(TomaError):
    """An OAuth2 sign-in or token refresh did not work."""


class SignInNeeded(AuthError):
    """No usable refresh token: the owner must sign in again with ``toma auth login``."""


class TokenUnavailable(AuthError):
    """The token endpoint cannot be reached or answered nonsense now: worth trying later."""


def sign_in_needed(account: str, why: str, *, key: str | None = None) -> SignInNeeded:
    """The one message a dead or missing sign-in gives, wherever it is found."""
    return SignInNeeded(
        f"the OAuth2 sign-in of {account} {why}: run `toma auth login {account}`",
        key=key,
    )
