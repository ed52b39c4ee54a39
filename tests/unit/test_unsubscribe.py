"""Unsubscribe tokens, links and headers: signed, tamper-evident, RFC 8058 when possible."""

from __future__ import annotations

import base64
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from email import message_from_bytes
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

from toma.core.contacts import Contact
from toma.errors import StoreError
from toma.mail.mime import build_message
from toma.mail.render import Rendered
from toma.mail.unsubscribe import (
    MAC_BYTES,
    ONE_CLICK,
    Unsubscribe,
    check_base_url,
    load_or_create_secret,
)

SECRET = bytes(range(32))
ADDRESS = "mira.keller@example.org"


def make(base_url: str | None = "https://toma.example.com", secret: bytes = SECRET) -> Unsubscribe:
    return Unsubscribe(secret, base_url, "alex@example.com")


class TestTokens:
    @pytest.mark.parametrize(
        "address",
        [
            ADDRESS,
            "a@b.c",
            "first.o'brien+news@sub.example.co.uk",
            "jürgen@bücher.example",  # a stored address may carry a Unicode domain
            "x" * 64 + "@" + "d" * 180 + ".example",
        ],
    )
    def test_round_trip(self, address: str) -> None:
        unsubscribe = make()
        token = unsubscribe.token(address)
        assert unsubscribe.verify(token) == address
        assert token.isascii()
        assert all(ch.isalnum() or ch in "-_." for ch in token)

    def test_token_is_address_and_truncated_mac(self) -> None:
        """base64url(address) "." base64url(HMAC-SHA256 cut to 128 bits), no padding."""
        encoded, mac = make().token(ADDRESS).split(".")
        assert base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4)).decode() == ADDRESS
        assert len(base64.urlsafe_b64decode(mac + "==")) == MAC_BYTES >= 16
        assert "=" not in encoded + mac

    def test_tokens_are_stable_and_per_address(self) -> None:
        unsubscribe = make()
        assert unsubscribe.token(ADDRESS) == make().token(ADDRESS)
        assert unsubscribe.token(ADDRESS) != unsubscribe.token("other@example.org")

    def test_every_altered_character_is_refused(self) -> None:
        """Changing any one character of a token, to anything, makes it worthless."""
        unsubscribe = make()
        token = unsubscribe.token(ADDRESS)
        alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.=+/ %"
        assert len(token) < 120  # bounds the loop below
        for position in range(len(token)):
            for replacement in alphabet:
                if replacement == token[position]:
                    continue
                altered = token[:position] + replacement + token[position + 1 :]
                assert unsubscribe.verify(altered) is None, (position, replacement)

    def test_every_flipped_bit_is_refused(self) -> None:
        unsubscribe = make()
        token = unsubscribe.token(ADDRESS).encode()
        for position in range(len(token)):
            for bit in range(8):
                flipped = bytearray(token)
                flipped[position] ^= 1 << bit
                text = flipped.decode("latin-1")
                assert unsubscribe.verify(text) is None, (position, bit)

    @pytest.mark.parametrize(
        "change",
        [
            lambda t: t + "A",
            lambda t: t[:-1],
            lambda t: "A" + t,
            lambda t: t + "=",
            lambda t: t.replace(".", ".."),
            lambda t: t.replace(".", ""),
            lambda t: t + ".x",
            lambda t: t.upper(),
            lambda t: "",
            lambda t: ".",
            lambda t: t.split(".")[0],
            lambda t: "x" * 5000,
            lambda t: t + "\n",
            lambda t: t[:5] + "é" + t[6:],
        ],
    )
    def test_malformed_tokens_are_refused(self, change: Callable[[str], str]) -> None:
        unsubscribe = make()
        token = unsubscribe.token(ADDRESS)
        assert unsubscribe.verify(change(token)) is None

    def test_another_address_with_the_same_mac_is_refused(self) -> None:
        unsubscribe = make()
        _, mac = unsubscribe.token(ADDRESS).split(".")
        other = base64.urlsafe_b64encode(b"victim@example.org").rstrip(b"=").decode()
        assert unsubscribe.verify(f"{other}.{mac}") is None

    def test_wrong_secret_is_refused(self) -> None:
        token = make(secret=b"\x01" * 32).token(ADDRESS)
        assert make(secret=b"\x02" * 32).verify(token) is None
        assert make(secret=b"\x01" * 32).verify(token) == ADDRESS

    def test_short_secret_is_refused(self) -> None:
        with pytest.raises(ValueError, match="at least 16 bytes"):
            make(secret=b"short")

    def test_secret_stays_out_of_repr(self) -> None:
        assert SECRET.hex() not in repr(make()) and str(SECRET) not in repr(make())

    @pytest.mark.parametrize("address", ["", "no-at-sign", "a@b\r\nBcc: x@y", "a b@c"])
    def test_no_token_for_a_non_address(self, address: str) -> None:
        with pytest.raises(ValueError):
            make().token(address)

    @pytest.mark.parametrize(
        "text",
        [
            "unsubscribe {token}",
            "Re: unsubscribe {token}",
            "unsubscribe%20{token}",
            "please\n{token}\nthanks",
        ],
    )
    def test_find_reads_the_token_from_a_subject(self, text: str) -> None:
        """The inbox learns who asked from the token, even from another address."""
        unsubscribe = make()
        assert unsubscribe.find(text.format(token=unsubscribe.token(ADDRESS))) == ADDRESS

    def test_find_ignores_forged_tokens(self) -> None:
        forged = make(secret=b"\x09" * 32).token(ADDRESS)
        assert make().find(f"unsubscribe {forged}") is None
        assert make().find("unsubscribe") is None


class TestLinks:
    def test_url(self) -> None:
        unsubscribe = make("https://toma.example.com/")
        url = unsubscribe.url(ADDRESS)
        assert url == f"https://toma.example.com/u/{unsubscribe.token(ADDRESS)}"

    def test_url_with_a_path_and_a_contact(self) -> None:
        unsubscribe = make("https://example.com/toma")
        contact = Contact(email=ADDRESS)
        assert (
            unsubscribe.url(contact) == f"https://example.com/toma/u/{unsubscribe.token(ADDRESS)}"
        )

    def test_no_base_url_no_link(self) -> None:
        assert make(None).url(ADDRESS) is None

    @pytest.mark.parametrize(
        "base",
        [
            "http://127.0.0.1:8080",
            "http://localhost:1234/x",
            "http://[::1]:99",
            "https://a.example",
        ],
    )
    def test_allowed_base_urls(self, base: str) -> None:
        assert check_base_url(base) == base

    @pytest.mark.parametrize(
        ("base", "says"),
        [
            ("http://toma.example.com", "must use https"),
            ("http://10.0.0.1", "must use https"),
            ("ftp://example.com", "not an https:// URL"),
            ("toma.example.com", "not an https:// URL"),
            ("https://", "not an https:// URL"),
            ("https://example.com/?a=1", "base URL only"),
            ("https://user:pw@example.com", "base URL only"),
            ("https://example.com/a b", "control characters"),
            ("https://example.com\r\nX: y", "control characters"),
        ],
    )
    def test_refused_base_urls(self, base: str, says: str) -> None:
        with pytest.raises(ValueError, match=says):
            make(base)

    def test_mailto_goes_to_the_inbox_with_the_token_in_the_subject(self) -> None:
        unsubscribe = make()
        mailto = unsubscribe.mailto(Contact(email=ADDRESS))
        parts = urlsplit(mailto)
        assert parts.scheme == "mailto"
        assert parts.path == "alex@example.com"
        assert unquote(parts.query) == f"subject=unsubscribe {unsubscribe.token(ADDRESS)}"
        assert unsubscribe.find(unquote(parts.query)) == ADDRESS

    def test_mailto_address_is_checked(self) -> None:
        with pytest.raises(ValueError, match="cannot receive"):
            Unsubscribe(SECRET, None, "not an address")
        idn = Unsubscribe(SECRET, None, "owner@bücher.example")
        assert idn.mailto(ADDRESS).startswith("mailto:owner@xn--bcher-kva.example?subject=")

    def test_context_for_templates(self) -> None:
        unsubscribe = make()
        assert unsubscribe.context(ADDRESS) == {
            "unsubscribe_url": unsubscribe.url(ADDRESS),
            "unsubscribe_mailto": unsubscribe.mailto(ADDRESS),
        }
        assert make(None).context(ADDRESS)["unsubscribe_url"] is None


class TestHeaders:
    def test_one_click_headers(self) -> None:
        """RFC 8058: an https URI in List-Unsubscribe and List-Unsubscribe-Post: One-Click."""
        unsubscribe = make()
        headers = unsubscribe.headers(ADDRESS)
        assert headers == {
            "List-Unsubscribe": f"<{unsubscribe.mailto(ADDRESS)}>, <{unsubscribe.url(ADDRESS)}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        assert ONE_CLICK == "List-Unsubscribe=One-Click"

    def test_mailto_only_without_a_url(self) -> None:
        """No https URI, no List-Unsubscribe-Post: RFC 8058 needs the https one."""
        unsubscribe = make(None)
        assert unsubscribe.headers(ADDRESS) == {
            "List-Unsubscribe": f"<{unsubscribe.mailto(ADDRESS)}>",
        }

    @pytest.mark.parametrize("base", ["https://toma.example.com", None])
    def test_message_options_feed_build_message(self, base: str | None) -> None:
        """The built message carries exactly the headers :meth:`headers` describes."""
        unsubscribe = make(base)
        rendered = Rendered(subject="Hello", text="Hi\n", html="<p>Hi</p>", front={})
        built = build_message(
            rendered,
            sender_name="Alex",
            sender_email="alex@example.com",
            to_name="Mira",
            to_email=ADDRESS,
            date=datetime(2026, 12, 8, 9, 1, tzinfo=UTC),
            domain="example.com",
            **unsubscribe.message_options(ADDRESS),
        )
        parsed = message_from_bytes(built.data)
        for name, value in unsubscribe.headers(ADDRESS).items():
            assert " ".join(str(parsed[name]).split()) == value
        assert ("List-Unsubscribe-Post" in parsed) is (base is not None)


class TestSecret:
    def test_created_once_with_owner_only_mode(self, tmp_path: Path) -> None:
        path = tmp_path / "unsubscribe.key"
        secret = load_or_create_secret(path)
        assert len(secret) == 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert load_or_create_secret(path) == secret
        assert [p.name for p in tmp_path.iterdir()] == ["unsubscribe.key"]  # no temporary left

    def test_two_data_directories_two_secrets(self, tmp_path: Path) -> None:
        (tmp_path / "a").mkdir()
        (tmp_path / "b").mkdir()
        assert load_or_create_secret(tmp_path / "a" / "k") != load_or_create_secret(
            tmp_path / "b" / "k"
        )

    def test_existing_secret_is_kept_and_its_mode_tightened(self, tmp_path: Path) -> None:
        path = tmp_path / "k"
        path.write_bytes(b"s" * 32)
        path.chmod(0o644)
        assert load_or_create_secret(path) == b"s" * 32
        assert stat.S_IMODE(path.stat().st_mode) == 0o600

    def test_short_secret_file_is_an_error_not_replaced(self, tmp_path: Path) -> None:
        """Replacing it would silently break every link already sent."""
        path = tmp_path / "k"
        path.write_bytes(b"")
        with pytest.raises(StoreError, match="too short") as caught:
            load_or_create_secret(path)
        assert caught.value.file == str(path)
        assert path.read_bytes() == b""

    def test_missing_folder_is_a_store_error(self, tmp_path: Path) -> None:
        with pytest.raises(StoreError, match="cannot create"):
            load_or_create_secret(tmp_path / "missing" / "k")
