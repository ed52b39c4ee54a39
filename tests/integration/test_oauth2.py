"""OAuth2 end to end: sign in with the device flow, then send over XOAUTH2 and read over IMAP.

Real servers on 127.0.0.1, shared by the module: a small authorisation server
(device flow, refresh with rotation, introspection), Dovecot with its ``oauth2``
passdb asking that server, and an aiosmtpd server taking XOAUTH2 and OAUTHBEARER
the same way. Each test signs in afresh into a project of its own.
"""

from __future__ import annotations

import json
import stat
import threading
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from toma.auth import SignInNeeded, TokenSource, TokenUnavailable
from toma.auth.login import sign_in
from toma.cli import main
from toma.config import load_config
from toma.daemon.tick import TickReport
from toma.daemon.worker import Worker
from toma.exits import Exit
from toma.store import open_store

from . import dovecot, oauth_server
from .oauth_server import AuthServer, OAuthDovecot, XOAuth2Smtp, oauth2_config, token_path
from .projects import add_contacts, make_project

# The XOAUTH2 server takes AUTH without TLS (loopback only); aiosmtpd warns about that
# for every connection, in its own thread.
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
DEVICE = "urn:ietf:params:oauth:grant-type:device_code"


oauth_servers = oauth_server.oauth_servers
servers = oauth_server.fresh_servers


def project(
    folder: Path,
    auth: AuthServer,
    imap: OAuthDovecot,
    smtp: XOAuth2Smtp,
    *,
    contacts: int = 2,
    mechanism: str = "xoauth2",
    smtp_user: str = dovecot.USER,
    device: bool = True,
) -> tuple[Path, str]:
    """A project sending through ``smtp`` and reading a new folder of ``imap``, both OAuth2."""
    config = make_project(folder, contacts=contacts, now=NOW)
    box = imap.new_folder()
    sections = (
        '[transport]\nkind = "smtp"\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
        f'username = "{smtp_user}"\nauth = "{mechanism}"\nrate_per_minute = 100000\n'
        'timeout = 10\nretry_for = "1h"\n\n'
        '[inbox]\nkind = "imap"\n\n'
        f'[imap]\nhost = "127.0.0.1"\nport = {imap.port}\nsecurity = "none"\n'
        f'username = "{dovecot.USER}"\nauth = "{mechanism}"\nfolder = "{box}"\nidle = false\n\n'
        + oauth2_config(auth, device=device)
    )
    text = config.read_text(encoding="utf-8")
    old = '[transport]\nkind = "maildir"\npath = "var/outbox"\n'
    assert old in text
    config.write_text(text.replace(old, sections), encoding="utf-8")
    return config, box


def login(auth: AuthServer, config: Path, *approve_as: str, account: str | None = None) -> str:
    """``toma auth login [account]``, the test approving each device code as the next name."""
    approver = auth.approve_in_background(*approve_as)
    command = ["--config", str(config), "auth", "login", *([account] if account else [])]
    result = CliRunner().invoke(main, command)
    approver.join(10)
    assert result.exit_code == 0, result.output
    return result.output


def report_of(config: Path, now: datetime = NOW, retry: timedelta | None = None) -> TickReport:
    """One tick's report; ``retry`` bounds the retries of temporary failures within it."""
    with open_store(config.parent / "var" / "data") as store:
        if retry is None:
            return Worker(config, store).run_once(now)
        return Worker(config, store, in_tick_retry=retry).run_once(now)


def test_device_sign_in_then_a_tick_sends_and_reads_over_xoauth2(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """The device flow keeps an owner-only token; a tick signs in to SMTP and IMAP with it."""
    auth, imap, smtp = servers
    config, box = project(tmp_path / "p", auth, imap, smtp, contacts=3)
    before = len(smtp.messages)
    output = login(auth, config, dovecot.USER)
    assert "enter the code" in output and "signed in: toma" in output
    saved = token_path(tmp_path / "p", dovecot.USER)
    assert stat.S_IMODE(saved.stat().st_mode) == 0o600
    assert stat.S_IMODE(saved.parent.stat().st_mode) == 0o700
    imap.append(dovecot.message(1), folder=box)

    report = report_of(config)

    assert report.problems == []
    assert report.sent == 3 and report.failed == 0
    taken = smtp.messages[before:]
    assert len(taken) == 3 and {item.user for item in taken} == {dovecot.USER}
    assert report.inbound == 1


def test_an_access_token_revoked_mid_run_is_refreshed_without_a_failed_send(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """A token the servers stop taking before its time: one refresh, then every send goes."""
    auth, imap, smtp = servers
    config, box = project(tmp_path / "p", auth, imap, smtp, contacts=2)
    login(auth, config, dovecot.USER)
    assert report_of(config).sent == 2
    refreshes = auth.count("refresh_token")
    refused = smtp.handler.refused

    auth.expire_access_tokens()  # the stored token still looks good for an hour
    add_contacts(tmp_path / "p", 3, tag="friend", now=NOW, start=100)
    imap.append(dovecot.message(2), folder=box)
    report = report_of(config, NOW + timedelta(minutes=5))

    assert report.problems == []
    assert report.sent == 3 and report.failed == 0 and report.retrying == 0
    assert report.inbound == 1
    # IMAP was refused first, refreshed; SMTP then opened with the new token.
    assert auth.count("refresh_token") == refreshes + 1
    assert smtp.handler.refused == refused


def test_smtp_refusing_a_token_refreshes_it_once_and_tries_again(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """Refused at AUTH on SMTP alone (IMAP unused): each connection opened with the stale
    token is refused once, one refresh serves them all, and every message goes."""
    auth, imap, smtp = servers
    config, _box = project(tmp_path / "p", auth, imap, smtp, contacts=2, smtp_user="sender@x.test")
    text = config.read_text(encoding="utf-8").replace('[inbox]\nkind = "imap"', "[inbox]")
    config.write_text(text.replace('auth = "xoauth2"\nfolder', 'auth = "password"\nfolder'))
    login(auth, config, "sender@x.test")
    refreshes, refused = auth.count("refresh_token"), smtp.handler.refused
    auth.expire_access_tokens()

    report = report_of(config)

    assert report.problems == [] and report.sent == 2 and report.failed == 0
    assert 1 <= smtp.handler.refused - refused <= 2  # two connections at most, for two sends
    assert auth.count("refresh_token") == refreshes + 1


def test_a_token_close_to_expiry_is_refreshed_before_it_is_used(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """Five minutes ahead of the announced expiry the source refreshes; before that it does not."""
    auth, imap, smtp = servers
    config, _box = project(tmp_path / "p", auth, imap, smtp)
    login(auth, config, dovecot.USER)
    oauth2 = load_config(config).smtp.oauth2
    assert oauth2 is not None
    signed_at = datetime.now(UTC)
    refreshes = auth.count("refresh_token")

    early = TokenSource(oauth2, clock=lambda: signed_at + timedelta(minutes=50)).token()
    assert auth.count("refresh_token") == refreshes
    late = TokenSource(oauth2, clock=lambda: signed_at + timedelta(minutes=56)).token()
    assert auth.count("refresh_token") == refreshes + 1
    assert late != early
    assert auth.introspect(late) == dovecot.USER


def test_a_token_endpoint_down_leaves_a_still_valid_token_in_use(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """Refreshing ahead of time may fail; the token is used until it really expires."""
    auth, imap, smtp = servers
    config, _box = project(tmp_path / "p", auth, imap, smtp)
    login(auth, config, dovecot.USER)
    oauth2 = load_config(config).smtp.oauth2
    assert oauth2 is not None
    signed_at = datetime.now(UTC)
    current = TokenSource(oauth2).token()
    auth.token_endpoint_down(True)
    try:
        soon = TokenSource(oauth2, clock=lambda: signed_at + timedelta(minutes=57)).token()
        assert soon == current
        late = TokenSource(oauth2, clock=lambda: signed_at + timedelta(minutes=61))
        with pytest.raises(TokenUnavailable, match="answered 503 to the refresh"):
            late.token()
    finally:
        auth.token_endpoint_down(False)


def test_a_token_endpoint_out_of_reach_is_temporary_for_both_servers(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """Expired token, endpoint answering 503: nothing sent or failed, exit 75, not 78; the
    next tick with the endpoint back sends everything."""
    auth, imap, smtp = servers
    config, _box = project(tmp_path / "p", auth, imap, smtp)
    login(auth, config, dovecot.USER)
    saved = token_path(tmp_path / "p", dovecot.USER)
    doc = json.loads(saved.read_text())
    saved.write_text(json.dumps(doc | {"expires_at": "2000-01-01T00:00:00+00:00"}))  # time passed
    auth.token_endpoint_down(True)
    try:
        report = report_of(config, retry=timedelta(0))
    finally:
        auth.token_endpoint_down(False)

    assert report.sent == 0 and report.failed == 0 and report.retrying == 2
    assert report.exit_code() is Exit.RETRY, (report.problems, report.temporary)
    assert report_of(config, NOW + timedelta(minutes=30)).sent == 2


def test_oauthbearer_signs_in_to_both_servers(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    auth, imap, smtp = servers
    config, box = project(tmp_path / "p", auth, imap, smtp, mechanism="oauthbearer")
    login(auth, config, dovecot.USER)
    imap.append(dovecot.message(3), folder=box)

    report = report_of(config)

    assert report.problems == [] and report.sent == 2 and report.inbound == 1


def test_a_revoked_imap_sign_in_is_one_message_and_sending_goes_on(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """IMAP's refresh token revoked: one line naming the command to run; SMTP still sends."""
    auth, imap, smtp = servers
    config, box = project(tmp_path / "p", auth, imap, smtp, smtp_user="sender@x.test")
    login(auth, config, "sender@x.test", dovecot.USER)  # SMTP's account first, as listed
    auth.revoke(dovecot.USER)
    imap.append(dovecot.message(4), folder=box)

    report = report_of(config)

    assert report.sent == 2 and report.failed == 0
    assert len(report.problems) == 1, report.problems
    assert "run `toma auth login toma`" in report.problems[0]
    assert report.inbound == 0
    assert report.exit_code() is Exit.NEEDS_YOU  # `toma run --once` and `toma status`: 78


def test_a_revoked_smtp_sign_in_is_one_message_and_reading_goes_on(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """SMTP's refresh token revoked: nothing is sent or failed (the messages wait), one
    line says what to run; the inbox is read."""
    auth, imap, smtp = servers
    config, box = project(tmp_path / "p", auth, imap, smtp, smtp_user="sender@x.test")
    login(auth, config, "sender@x.test", dovecot.USER)
    auth.revoke("sender@x.test")
    imap.append(dovecot.message(5), folder=box)
    before = len(smtp.messages)

    report = report_of(config, retry=timedelta(0))  # no retrying within the tick: it is quick

    assert report.inbound == 1
    assert report.sent == 0 and report.failed == 0 and report.retrying == 2
    assert len(report.problems) == 1, report.problems
    assert "run `toma auth login sender@x.test`" in report.problems[0]
    assert report.exit_code() is Exit.NEEDS_YOU
    assert len(smtp.messages) == before
    # Signing in again is all it takes: the messages held go at the next tick.
    login(auth, config, "sender@x.test", account="sender@x.test")
    assert report_of(config, NOW + timedelta(minutes=30)).sent == 2


def test_never_signed_in_says_what_to_run(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    auth, imap, smtp = servers
    config, _box = project(tmp_path / "p", auth, imap, smtp)
    oauth2 = load_config(config).imap.oauth2
    assert oauth2 is not None
    with pytest.raises(SignInNeeded, match=r"run `toma auth login toma`"):
        TokenSource(oauth2).token()
    status = CliRunner().invoke(main, ["--config", str(config), "auth", "status"])
    assert "toma: not signed in: run `toma auth login toma`" in status.output


def test_loopback_sign_in_where_there_is_no_device_flow(
    servers: tuple[AuthServer, OAuthDovecot, XOAuth2Smtp], tmp_path: Path
) -> None:
    """The browser (played by the test) comes back to 127.0.0.1 with a code; PKCE is sent."""
    auth, imap, smtp = servers
    config, _box = project(tmp_path / "p", auth, imap, smtp, device=False)
    oauth2 = load_config(config).imap.oauth2
    assert oauth2 is not None and not oauth2.device_authorization_url
    visits: list[threading.Thread] = []

    def browser(line: str) -> None:
        if line.startswith("http://"):
            thread = threading.Thread(
                target=lambda: urllib.request.urlopen(line, timeout=10).read(), daemon=True
            )
            thread.start()
            visits.append(thread)

    token = sign_in(oauth2, show=browser, clock=lambda: NOW, wait=lambda _s: None)
    for visit in visits:
        visit.join(10)
    assert len(visits) == 1
    assert auth.introspect(token.access_token) == dovecot.USER
    assert TokenSource(oauth2, clock=lambda: NOW).token() == token.access_token
