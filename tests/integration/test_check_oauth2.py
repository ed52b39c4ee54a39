"""`toma check --connect` with OAuth2, the Sent folder and the stages the older tests leave out."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
import trustme
from click.testing import CliRunner, Result

from toma.cli import main
from toma.config import load_config
from toma.exits import Exit
from toma.project.connect import probe_imap

from . import dovecot, oauth_server
from .dovecot import Dovecot
from .oauth_server import SENT_FOLDER, AuthServer, OAuthDovecot, XOAuth2Smtp, oauth2_config
from .projects import make_project

pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
servers = oauth_server.oauth_servers
dovecot_tls_server = dovecot.dovecot_tls_server
dovecot_ca = dovecot.dovecot_ca

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
Servers = tuple[AuthServer, OAuthDovecot, XOAuth2Smtp]


def project(folder: Path, sections: str) -> Path:
    config = make_project(folder, contacts=1, now=NOW)
    text = config.read_text(encoding="utf-8")
    old = '[transport]\nkind = "maildir"\npath = "var/outbox"\n'
    config.write_text(text.replace(old, sections), encoding="utf-8")
    return config


def oauth_project(folder: Path, servers: Servers, *, imap_folder: str = "INBOX") -> Path:
    auth, imap, smtp = servers
    return project(
        folder,
        '[transport]\nkind = "smtp"\n\n'
        f'[smtp]\nhost = "127.0.0.1"\nport = {smtp.port}\nsecurity = "none"\n'
        f'username = "{dovecot.USER}"\nauth = "xoauth2"\n\n'
        '[inbox]\nkind = "imap"\n\n'
        f'[imap]\nhost = "127.0.0.1"\nport = {imap.port}\nsecurity = "none"\n'
        f'username = "{dovecot.USER}"\nauth = "xoauth2"\nfolder = "{imap_folder}"\n\n'
        + oauth2_config(auth),
    )


def check(config: Path) -> Result:
    return CliRunner().invoke(main, ["--config", str(config), "check", "--connect"])


def login(auth: AuthServer, config: Path) -> None:
    approver = auth.approve_in_background(dovecot.USER)
    result = CliRunner().invoke(main, ["--config", str(config), "auth", "login"])
    approver.join(10)
    assert result.exit_code == 0, result.output


def test_oauth2_signs_in_to_both_and_finds_the_sent_folder_by_special_use(
    servers: Servers, tmp_path: Path
) -> None:
    """Signed in with XOAUTH2 on both servers; Sent is found by its \\Sent flag alone."""
    auth, imap, smtp = servers
    config = oauth_project(tmp_path, servers)
    login(auth, config)

    result = check(config)

    assert result.exit_code == Exit.OK, result.output
    assert f"ok: smtp 127.0.0.1:{smtp.port}: none, signed in as toma with XOAUTH2" in result.output
    assert f"ok: imap 127.0.0.1:{imap.port}: none, signed in as toma with XOAUTH2" in result.output
    assert f"Sent folder '{SENT_FOLDER}' (found by SPECIAL-USE \\Sent)" in result.output


def test_oauth2_never_signed_in_is_a_login_failure_naming_the_command(
    servers: Servers, tmp_path: Path
) -> None:
    _auth, imap, smtp = servers
    config = oauth_project(tmp_path, servers)

    result = check(config)

    assert result.exit_code == Exit.NEEDS_YOU, result.output
    for what, port in (("smtp", smtp.port), ("imap", imap.port)):
        assert f"{what} 127.0.0.1:{port}: login: " in result.output
        assert "run `toma auth login toma`" in result.output


def test_oauth2_revoked_sign_in_is_a_login_failure(servers: Servers, tmp_path: Path) -> None:
    """Refused with the stored token, refreshed once, refused refresh: the login stage says so."""
    auth, imap, smtp = servers
    config = oauth_project(tmp_path, servers)
    login(auth, config)
    auth.revoke(dovecot.USER)

    result = check(config)

    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert f"smtp 127.0.0.1:{smtp.port}: login: the OAuth2 sign-in of toma no longer works" in (
        result.output
    )
    assert f"imap 127.0.0.1:{imap.port}: login: the OAuth2 sign-in of toma no longer works" in (
        result.output
    )


def test_imap_a_second_folder_that_does_not_exist_is_a_folder_failure(
    servers: Servers, tmp_path: Path
) -> None:
    auth, _imap, _smtp = servers
    config = oauth_project(tmp_path, servers)
    login(auth, config)
    section = load_config(config).imap

    probes = probe_imap(section, folders=["INBOX", SENT_FOLDER, "Nowhere"])

    assert [probe.stage for probe in probes] == ["ok", "ok", "folder", "ok"]
    assert probes[2].exit is Exit.NEEDS_YOU
    assert "cannot open the folder 'Nowhere'" in probes[2].detail
    assert probes[1].detail == f"folder '{SENT_FOLDER}' opened read-only"


def test_imap_name_that_does_not_resolve_is_a_dns_failure(tmp_path: Path) -> None:
    config = project(
        tmp_path,
        '[inbox]\nkind = "imap"\n\n[imap]\nhost = "no-such-host.invalid"\n'
        'username = "toma"\npassword_env = "TOMA_TEST_UNUSED"\n',
    )
    result = check(config)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert (
        "imap no-such-host.invalid:993: dns: the name 'no-such-host.invalid' does not resolve"
        in (result.output)
    )


def test_imap_untrusted_certificate_is_a_tls_failure(
    dovecot_tls_server: Dovecot, tmp_path: Path
) -> None:
    """A CA the config does not name signed the server's certificate."""
    other = tmp_path / "other-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(other))
    config = project(
        tmp_path,
        '[inbox]\nkind = "imap"\n\n'
        f'[imap]\nhost = "127.0.0.1"\nport = {dovecot_tls_server.tls_port}\nsecurity = "tls"\n'
        f'username = "{dovecot.USER}"\npassword_file = "{dovecot_tls_server.password_file}"\n'
        f'ca_file = "{other}"\n',
    )
    result = check(config)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert f"imap 127.0.0.1:{dovecot_tls_server.tls_port}: tls: the certificate" in result.output
