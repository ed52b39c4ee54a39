"""provider = "…" fills a server's settings; every key written wins; OAuth2 needs an app."""

from __future__ import annotations

from pathlib import Path

import pytest

from toma.config import parse_config, parse_toml
from toma.config.providers import PRESETS
from toma.errors import ConfigError

OWNER = '[owner]\nname = "Alex"\nemail = "alex@example.com"\n'


def load(text: str, tmp_path: Path):
    full = OWNER + text
    file = tmp_path / "config.toml"
    return parse_config(parse_toml(full, file=file), file=file, text=full)


def test_a_preset_fills_host_port_security_auth_rate_and_the_oauth2_endpoints(
    tmp_path: Path,
) -> None:
    config = load(
        '[transport]\nkind = "smtp"\n[smtp]\nprovider = "microsoft365"\n'
        'username = "alex@example.com"\n[inbox]\nkind = "imap"\n'
        '[imap]\nprovider = "microsoft365"\nusername = "alex@example.com"\n'
        '[oauth2]\nclient_id = "0000-app"\n',
        tmp_path,
    )
    smtp, imap = config.smtp, config.imap
    assert (smtp.host, smtp.port, smtp.security) == ("smtp.office365.com", 587, "starttls")
    assert (imap.host, imap.port, imap.security) == ("outlook.office365.com", 993, "tls")
    assert smtp.auth == imap.auth == "xoauth2"
    assert smtp.rate_per_minute == PRESETS["microsoft365"].rate_per_minute
    assert smtp.oauth2 is not None and imap.oauth2 is not None
    assert smtp.oauth2.device_authorization_url.endswith("/devicecode")
    assert "https://outlook.office.com/SMTP.Send" in smtp.oauth2.scopes
    # One account, one token file beside the data directory, for both servers.
    assert smtp.oauth2.token_file == imap.oauth2.token_file
    assert smtp.oauth2.token_file == tmp_path / "var" / "tokens" / "alex@example.com.json"
    assert imap.provider_sent_folder == "Sent Items"
    assert imap.files_sent_itself is False


def test_every_key_written_wins_over_the_preset(tmp_path: Path) -> None:
    config = load(
        '[smtp]\nprovider = "gmail"\nhost = "relay.example.com"\nsecurity = "starttls"\n'
        'auth = "password"\nrate_per_minute = 7\nusername = "a@example.com"\n'
        'password_env = "X"\n',
        tmp_path,
    )
    smtp = config.smtp
    assert (smtp.host, smtp.port, smtp.security, smtp.auth) == (
        "relay.example.com",
        587,  # the usual port of the security written, not the preset's
        "starttls",
        "password",
    )
    assert smtp.rate_per_minute == 7 and smtp.oauth2 is None


def test_gmail_files_sent_mail_itself_only_when_it_also_sends(tmp_path: Path) -> None:
    both = load(
        '[transport]\nkind = "smtp"\n[smtp]\nprovider = "gmail"\nauth = "password"\n'
        'username = "a@gmail.com"\npassword_env = "X"\n'
        '[imap]\nprovider = "gmail"\nauth = "password"\nusername = "a@gmail.com"\n',
        tmp_path,
    )
    assert both.imap.files_sent_itself is True
    assert both.imap.provider_sent_folder == "[Gmail]/Sent Mail"
    imap_only = load('[imap]\nprovider = "gmail"\nauth = "password"\n', tmp_path)
    assert imap_only.imap.files_sent_itself is False


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('[smtp]\nprovider = "hotmale"\n', "unknown provider 'hotmale'"),
        ('[smtp]\nauth = "cram"\n', 'auth must be "password", "xoauth2" or "oauthbearer"'),
        ('[smtp]\nauth = "xoauth2"\nusername = "a@b.c"\n', "needs \\[oauth2\\] client_id"),
        ('[smtp]\nauth = "xoauth2"\n', "needs smtp.username"),
        (
            '[smtp]\nauth = "xoauth2"\nusername = "a@b.c"\n[oauth2]\nclient_id = "x"\n',
            "needs token_url",
        ),
        (
            '[smtp]\nprovider = "gmail"\nusername = "a@b.c"\n[oauth2]\nclient_id = "x"\n'
            'token_url = "http://evil.example/token"\n',
            "must be an https:// address",
        ),
        (
            '[smtp]\nprovider = "gmail"\nusername = "a@b.c"\n[oauth2]\nclient_id = "x"\n'
            'token_url = "http://127.0.0.1.evil.example/token"\n',
            "must be an https:// address",
        ),
        ('[oauth2]\nclient_secret = "s3cret"\n', "unknown key 'client_secret'"),
    ],
)
def test_mistakes_are_config_errors(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load(text, tmp_path)
