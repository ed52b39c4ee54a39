"""OAuth2 sign-in for the mail servers: tokens kept owner-only, refreshed when due.

::

    source = TokenSource(config.smtp.oauth2)
    token = source.token()            # blocking; an AuthError when it cannot
    ...the server refuses it...
    token = source.refused(token)     # refreshed once, for one more try

``toma auth login`` signs in (:mod:`toma.auth.flows`), the token file is kept by
:mod:`toma.auth.store`, the values and their checks are :mod:`toma.auth.tokens`.
"""

from toma.auth.errors import AuthError, SignInNeeded, TokenUnavailable
from toma.auth.source import TokenSource

__all__ = ["AuthError", "SignInNeeded", "TokenSource", "TokenUnavailable"]
