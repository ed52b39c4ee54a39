"""`toma check --connect` signs in to real servers, sends nothing, and names what failed."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from toma.cli import main
from toma.config import Smtp
from toma.exits import Exit

from . import dovecot
from .conftest import RecordingHandler, free_port
from .dovecot import Dovecot
from .projects import make_project

dovecot_server = dovecot.dovecot_server

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)
PASSWORD_ENV = "TOMA_TEST_CHECK_PASSWORD"


def project(
    tmp_path: Path,
    smtp: Smtp | None,
    *,
    host: str | None = None,
    port: int | None = None,
    username: str | None = None,
    imap: str = "",
) -> Path:
    config = make_project(tmp_path, smtp=smtp, contacts=2, now=NOW)
    text = config.read_text()
    if smtp is not None:
        extra = f'ca_file = "{smtp.ca_file}"\n'
        if username:
            extra += f'username = "{username}"\npassword_env = "{PASSWORD_ENV}"\n'
        text = text.replace('retry_for = "1h"\n', 'retry_for = "1h"\n' + extra)
        if host is not None:
            text = text.replace(f'host = "{smtp.host}"', f'host = "{host}"')
        if port is not None:
            text = text.replace(f"port = {smtp.port}\n", f"port = {port}\n")
    config.write_text(text + imap)
    return config


def check(config: Path, monkeypatch: pytest.MonkeyPatch, password: str = "") -> Result:
    monkeypatch.setenv(PASSWORD_ENV, password)
    return CliRunner().invoke(
        main, ["--config", str(config), "check", "--connect"], catch_exceptions=False
    )


def imap_section(
    server: Dovecot,
    *,
    folder: str = "INBOX",
    password_file: Path | None = None,
    host: str = "127.0.0.1",
) -> str:
    return (
        f'\n[inbox]\nkind = "imap"\n\n[imap]\nhost = "{host}"\nport = {server.port}\n'
        f'security = "none"\nusername = "{server.imap_config().username}"\n'
        f'password_file = "{password_file or server.password_file}"\nfolder = "{folder}"\n'
    )


@pytest.mark.smtpd_options(tls="starttls", auth=True)
def test_smtp_signs_in_and_sends_nothing(
    tmp_path: Path,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    auth_credentials: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, smtp_config, username=auth_credentials[0])
    result = check(config, monkeypatch, auth_credentials[1])
    assert result.exit_code == Exit.OK, result.output
    assert f"ok: smtp 127.0.0.1:{smtp_config.port}: starttls, signed in as toma" in result.output
    assert "ok: inbox" in result.output
    names = [name for name, *_ in smtpd_handler.commands]
    assert "AUTH" in names and "QUIT" in names
    assert "MAIL" not in names and smtpd_handler.messages == []


@pytest.mark.smtpd_options(tls="starttls", auth=True)
def test_smtp_wrong_password_is_a_login_failure(
    tmp_path: Path,
    smtp_config: Smtp,
    auth_credentials: tuple[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, smtp_config, username=auth_credentials[0])
    result = check(config, monkeypatch, "not the password")
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert (
        f"smtp 127.0.0.1:{smtp_config.port}: login: refused the login of 'toma' (535"
        in result.output
    )
    assert "All good" not in result.output


def test_smtp_closed_port_is_a_tcp_failure(
    tmp_path: Path,
    smtp_config: Smtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    closed = free_port()
    config = project(tmp_path, smtp_config, port=closed)
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.RETRY, result.output
    assert f"smtp 127.0.0.1:{closed}: tcp: cannot connect (Connection refused)" in result.output


def test_smtp_name_that_does_not_resolve_is_a_dns_failure(
    tmp_path: Path,
    smtp_config: Smtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, smtp_config, host="mail.toma.invalid")
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert (
        f"smtp mail.toma.invalid:{smtp_config.port}: dns: the name 'mail.toma.invalid' "
        "does not resolve" in result.output
    )


@pytest.mark.smtpd_options(tls="tls", cert="untrusted")
def test_smtp_untrusted_certificate_is_a_tls_failure(
    tmp_path: Path,
    smtp_config: Smtp,
    smtpd_handler: RecordingHandler,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, smtp_config)
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert (
        f"smtp 127.0.0.1:{smtp_config.port}: tls: the certificate is not trusted "
        "(unable to get local issuer certificate)" in result.output
    )
    assert smtpd_handler.commands == []


@pytest.mark.smtpd_options(tls="starttls", cert="untrusted")
def test_smtp_untrusted_certificate_after_starttls_is_a_tls_failure(
    tmp_path: Path,
    smtp_config: Smtp,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, smtp_config)
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert ": tls: the certificate is not trusted" in result.output


def test_imap_signs_in_and_opens_the_folder(
    tmp_path: Path,
    dovecot_server: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, None, imap=imap_section(dovecot_server))
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.OK, result.output
    assert f"ok: imap 127.0.0.1:{dovecot_server.port}: none, signed in as " in result.output
    assert "ok: outbox" in result.output


def test_imap_wrong_password_is_a_login_failure(
    tmp_path: Path,
    dovecot_server: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    wrong = tmp_path / "wrong-password"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    config = project(tmp_path, None, imap=imap_section(dovecot_server, password_file=wrong))
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert f"imap 127.0.0.1:{dovecot_server.port}: login: " in result.output
    assert "refused the login" in result.output


def test_imap_missing_folder_is_a_folder_failure(
    tmp_path: Path,
    dovecot_server: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, None, imap=imap_section(dovecot_server, folder="No-Such-Folder"))
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert (
        f"imap 127.0.0.1:{dovecot_server.port}: folder: cannot open the folder "
        "'No-Such-Folder'" in result.output
    )


def test_imap_closed_port_is_a_tcp_failure(
    tmp_path: Path,
    dovecot_server: Dovecot,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    section = imap_section(dovecot_server).replace(
        f"port = {dovecot_server.port}", f"port = {free_port()}"
    )
    config = project(tmp_path, None, imap=section)
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.RETRY, result.output
    assert ": tcp: cannot connect (Connection refused)" in result.output


def test_an_outbox_maildir_that_is_a_file_is_a_path_failure(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    config = project(tmp_path, None)
    (tmp_path / "var" / "outbox").write_text("not a folder")
    result = check(config, monkeypatch)
    assert result.exit_code == Exit.NEEDS_YOU, result.output
    assert f"outbox {tmp_path / 'var' / 'outbox'}: path: is not a folder" in result.output
