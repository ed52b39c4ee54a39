"""The dashboard's password hash, its gate, CSRF tokens, and the [dashboard] section."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from toma.config import load_config
from toma.errors import ConfigError
from toma.web.auth import Csrf, Gate, hash_password, is_password_hash, verify_password

OWNER = '[owner]\nname = "A"\nemail = "a@example.com"\n'


def basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"anyone:{password}".encode()).decode()


def test_a_hash_verifies_its_password_only() -> None:
    stored = hash_password("correct horse")
    assert is_password_hash(stored)
    assert "correct horse" not in stored
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert hash_password("correct horse") != stored  # salted
    for broken in ("", "scrypt$1$2", "plain text", stored.replace("scrypt", "md5")):
        assert not verify_password("correct horse", broken)


def test_the_gate_asks_for_the_password_and_remembers_a_good_one() -> None:
    gate = Gate(hash_password("s3cret"))
    assert gate.required
    assert not gate.allows(None)
    assert not gate.allows("Bearer s3cret")
    assert not gate.allows("Basic !!notbase64")
    assert not gate.allows(basic("wrong"))
    assert gate.allows(basic("s3cret"))
    assert gate.allows(basic("s3cret"))  # the second time from memory
    assert Gate(None).allows(None)


def test_csrf_tokens() -> None:
    csrf = Csrf()
    assert csrf.valid(csrf.token)
    assert not csrf.valid(None)
    assert not csrf.valid("")
    assert not csrf.valid(csrf.token[:-1])
    assert Csrf().token != csrf.token  # a new key per server


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(OWNER + text)
    return path


def test_the_dashboard_section(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, ""))
    assert config.dashboard.serve and config.dashboard.listen is None
    assert config.dashboard.password_hash is None and not config.dashboard.behind_proxy
    (tmp_path / "dash.hash").write_text(hash_password("x") + "\n")
    config = load_config(
        write(
            tmp_path,
            '[dashboard]\nlisten = "0.0.0.0:9000"\npassword_file = "dash.hash"\n'
            "behind_proxy = true\nserve = false\n",
        )
    )
    assert config.dashboard.listen == ("0.0.0.0", 9000)  # noqa: S104
    assert config.dashboard.password_hash is not None
    assert is_password_hash(config.dashboard.password_hash.reveal() or "")
    assert config.dashboard.behind_proxy and not config.dashboard.serve


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ('[dashboard]\npassword = "hunter2"\n', "passwords do not belong in the config"),
        ('[dashboard]\nlisten = "nowhere"\n', "HOST:PORT"),
        ("[dashboard]\nopen = true\n", "open"),
    ],
)
def test_the_dashboard_section_refuses(tmp_path: Path, text: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says):
        load_config(write(tmp_path, text))
