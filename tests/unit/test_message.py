"""MIME messages: correctly encoded, ready for SMTP, and no value can add a header."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest

from toma.mail.mime import Built, build_message
from toma.mail.render import Rendered

WHEN = datetime(2024, 5, 6, 9, 1, tzinfo=timezone(timedelta(hours=2)))
INJECTIONS = [
    "Eve\r\nBcc: someone@example.com",
    "Eve\nBcc: someone@example.com",
    "Eve\rBcc: someone@example.com",
    "Eve\r\n\r\nBcc: someone@example.com",
    "Eve\x00\r\nBcc: someone@example.com",
    "Eve\u2028Bcc: someone@example.com",
    "Eve\x85Bcc: someone@example.com",
    "Zoë\r\nBcc: someone@example.com",
]


def rendered(
    subject: str = "Hello",
    text: str = "Hi there,\n\nJane\n",
    html: str = "<p>Hi there,</p>\n<p>Jane</p>\n",
) -> Rendered:
    return Rendered(subject=subject, text=text, html=html, front={}, template="t.md")


def build(**overrides: Any) -> Built:
    options: dict[str, Any] = {
        "sender_name": "Jane Doe",
        "sender_email": "jane@example.com",
        "to_name": "Mira Example",
        "to_email": "mira@example.org",
        "date": WHEN,
        "domain": "example.com",
    }
    message = overrides.pop("rendered", None) or rendered()
    options.update(overrides)
    return build_message(message, **options)


def parse(data: bytes) -> EmailMessage:
    parsed = BytesParser(policy=policy.default).parsebytes(data)
    assert isinstance(parsed, EmailMessage)
    return parsed


def header_names(data: bytes) -> list[str]:
    head = data.split(b"\r\n\r\n", 1)[0].decode("ascii")
    return [line.split(":", 1)[0].lower() for line in head.split("\r\n") if line[:1] not in " \t"]


class TestHeaderInjection:
    @pytest.mark.parametrize("value", INJECTIONS)
    @pytest.mark.parametrize("where", ["to_name", "sender_name", "subject", "header"])
    def test_no_value_adds_a_header(self, value: str, where: str) -> None:
        """A first name, last name, subject or extra header cannot add a Bcc (or anything)."""
        if where == "subject":
            built = build(rendered=rendered(subject=value))
        elif where == "header":
            built = build(headers={"X-Toma-Ref": value})
        else:
            built = build(**{where: value})
        parsed = parse(built.data)
        assert parsed.get_all("Bcc") is None
        assert "bcc" not in header_names(built.data)
        assert len(parsed["To"].addresses) == 1
        assert parsed["To"].addresses[0].addr_spec == "mira@example.org"
        assert len(parsed["From"].addresses) == 1
        assert parsed["From"].addresses[0].addr_spec == "jane@example.com"
        assert parsed.get_content_type() == "multipart/alternative"
        for header in ("Subject", "To", "From", "X-Toma-Ref"):
            assert "\n" not in str(parsed.get(header, ""))
            assert "\r" not in str(parsed.get(header, ""))

    def test_first_and_last_name_together_make_one_address(self) -> None:
        first, last = "Eve\r\nBcc: a@example.com", "Smith\nCc: b@example.com, c@example.com"
        parsed = parse(build(to_name=f"{first} {last}").data)
        assert parsed.get_all("Bcc") is None and parsed.get_all("Cc") is None
        assert [a.addr_spec for a in parsed["To"].addresses] == ["mira@example.org"]

    @pytest.mark.parametrize(
        "address",
        [
            "mira@example.org\r\nBcc: x@example.com",
            "mira@example.org\n",
            "mira\r@example.org",
            "a@b.example, c@d.example",
            "Mira <mira@example.org>",
            "mira@example.org\x00",
            "no-at-sign",
            "mira @example.org",
            "",
        ],
    )
    @pytest.mark.parametrize("field", ["to_email", "sender_email"])
    def test_addresses_that_are_not_plain_are_refused(self, address: str, field: str) -> None:
        with pytest.raises(ValueError, match="not a plain email address"):
            build(**{field: address})

    @pytest.mark.parametrize(
        "name", ["Bcc", "To", "subject", "Content-Type", "X Bad", "X:Y", "X\r\nBcc", ""]
    )
    def test_extra_headers_cannot_replace_ours(self, name: str) -> None:
        with pytest.raises(ValueError, match="extra header"):
            build(headers={name: "value"})

    @pytest.mark.parametrize(
        "name",
        [
            "Doe, Jane",
            'Jane "JD" Doe',
            "Jane <admin@evil.example>",
            "jane@evil.example",
            "(Jane) Doe; x",
        ],
    )
    def test_names_with_specials_stay_one_display_name(self, name: str) -> None:
        parsed = parse(build(to_name=name).data)
        (address,) = parsed["To"].addresses
        assert address.display_name == name
        assert address.addr_spec == "mira@example.org"


class TestEncoding:
    @pytest.mark.parametrize(
        "name",
        [
            "Zoë Ångström",
            "山田太郎",
            "Jürgen Groß-Müller",
            "Ольга Петрова",
            "Zoë, Å (x)",
            "👋 " * 60,
        ],
    )
    def test_non_ascii_names_round_trip(self, name: str) -> None:
        """Display names are RFC 2047 encoded and read back exactly by a modern parser."""
        built = build(to_name=name, sender_name=name)
        assert built.data.split(b"\r\n\r\n")[0].isascii()
        parsed = parse(built.data)
        for header in ("To", "From"):
            (address,) = parsed[header].addresses
            # A name long enough to need several encoded words comes back with a
            # doubled space at their joins: the modern parser does that to what
            # EmailMessage writes too (see test_headers_are_encoded_as_emailmessage_does).
            assert " ".join(address.display_name.split()) == name.strip()
        assert parsed["To"].addresses[0].addr_spec == "mira@example.org"

    @pytest.mark.parametrize(
        "subject",
        [
            "Grüße – à bientôt 👋",
            "山田さん、お元気ですか",
            "Plain ASCII subject",
            "=?utf-8?q?not_an_encoded_word?=",
            "Ünïcödé " * 40,
            "x" * 2000,
            "word " * 400,
        ],
    )
    def test_subjects_round_trip(self, subject: str) -> None:
        parsed = parse(build(rendered=rendered(subject=subject)).data)
        assert parsed["Subject"] == " ".join(subject.split())

    @pytest.mark.parametrize(
        ("text", "encoding"),
        [
            ("Hi there,\n\nJane\n", "7bit"),
            ("Hi Zoë,\n\nthanks for the coffee — see you soon.\n", "quoted-printable"),
            ("山田さん、\n\nお元気ですか。\n", "base64"),
            ("👋" * 50 + "\n", "base64"),
            ("a" * 3000 + "\n", "quoted-printable"),
        ],
    )
    def test_bodies_round_trip_with_a_sensible_encoding(self, text: str, encoding: str) -> None:
        """Both parts are utf-8; mostly-ASCII text stays readable, other scripts go base64."""
        parsed = parse(build(rendered=rendered(text=text, html=f"<p>{text}</p>")).data)
        plain, html = list(parsed.iter_parts())
        assert plain.get_content_type() == "text/plain"
        assert html.get_content_type() == "text/html"
        for part in (plain, html):
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] == encoding
        # The parser hands back the wire's CRLF line ends in text it did not decode.
        assert plain.get_content().replace("\r\n", "\n") == text
        assert html.get_content().replace("\r\n", "\n") == f"<p>{text}</p>"

    @pytest.mark.parametrize(
        ("name", "subject"),
        [
            ("Zoë Ångström", "Grüße – à bientôt 👋"),
            ("山田太郎", "山田さん、お元気ですか"),
            ("Doe, Jane", "Plain ASCII"),
            ("Jürgen Groß-Müller", "Ünïcödé " * 10),
            ("👋 " * 60, "x " * 100),
        ],
    )
    def test_headers_are_encoded_as_emailmessage_does(self, name: str, subject: str) -> None:
        """The compat32 classes are used for speed; the bytes match the modern API's."""
        modern = EmailMessage(policy=policy.SMTP)
        modern["To"] = Address(name.strip(), addr_spec="mira@example.org")
        modern["Subject"] = " ".join(subject.split())
        ours = build(to_name=name, rendered=rendered(subject=subject)).data

        def header(data: bytes, field: str) -> str:
            head = data.split(b"\r\n\r\n")[0].decode("ascii").replace("\r\n ", " ")
            (line,) = [h for h in head.split("\r\n") if h.startswith(f"{field}: ")]
            return line.rstrip()

        for field in ("To", "Subject"):
            assert header(ours, field) == header(bytes(modern), field)

    def test_alternative_has_text_then_html(self) -> None:
        parsed = parse(build().data)
        assert parsed.get_content_type() == "multipart/alternative"
        body = parsed.get_body(preferencelist=("plain",))
        assert body is not None and body.get_content() == "Hi there,\r\n\r\nJane\r\n"
        body = parsed.get_body(preferencelist=("html",))
        assert body is not None and "<p>Jane</p>" in body.get_content()
        assert parsed["MIME-Version"] == "1.0"
        assert all(part["MIME-Version"] is None for part in parsed.iter_parts())

    def test_attachment_follows_the_alternative(self) -> None:
        parsed = parse(build(attachments=[("invoice 7.pdf", b"%PDF-1.4 ...")]).data)
        assert parsed.get_content_type() == "multipart/mixed"
        alternative, pdf = parsed.iter_parts()
        assert alternative.get_content_type() == "multipart/alternative"
        assert pdf.get_content_type() == "application/pdf"
        assert pdf.get_filename() == "invoice 7.pdf"
        assert pdf.get_content() == b"%PDF-1.4 ..."
        assert all(part["MIME-Version"] is None for part in parsed.walk() if part is not parsed)

    @pytest.mark.parametrize(
        "options",
        [
            {},
            {"rendered": rendered(subject="x" * 5000)},
            {"rendered": rendered(subject="Grüße " * 300)},
            {"to_name": "N" * 3000},
            {"to_name": "名" * 1000},
            {"rendered": rendered(text="long line " * 500, html="<p>" + "y" * 5000 + "</p>")},
            {"rendered": rendered(text="山" * 3000, html="山" * 3000)},
            {"references": [f"<{n}.ref@example.com>" for n in range(200)]},
            {"headers": {"X-Long": "z" * 3000}},
        ],
    )
    def test_lines_end_in_crlf_and_stay_under_998_octets(self, options: dict[str, Any]) -> None:
        """Ready for SMTP: CRLF everywhere, and folding keeps every line within RFC 5322."""
        data = build(**options).data
        assert b"\n" not in data.replace(b"\r\n", b"")
        assert b"\r" not in data.replace(b"\r\n", b"")
        assert max(len(line) for line in data.split(b"\r\n")) <= 998


class TestIdentity:
    def test_message_id_is_on_the_given_domain_and_unique(self) -> None:
        ids = {build(domain="mail.example.com").message_id for _ in range(500)}
        assert len(ids) == 500
        for msgid in ids:
            assert msgid.startswith("<") and msgid.endswith("@mail.example.com>")

    def test_message_id_header_matches_built(self) -> None:
        built = build()
        assert parse(built.data)["Message-ID"] == built.message_id

    @pytest.mark.parametrize(
        ("given", "written"),
        [("<abc@example.com>", "<abc@example.com>"), ("abc@example.com", "<abc@example.com>")],
    )
    def test_given_message_id_is_used(self, given: str, written: str) -> None:
        """A caller that recorded the id before sending keeps it (at-most-once records)."""
        built = build(message_id=given)
        assert built.message_id == written
        assert parse(built.data)["Message-ID"] == written

    @pytest.mark.parametrize("bad", ["<a b@example.com>", "<a@example.com>\r\nBcc: x", "<>", ""])
    def test_bad_message_id_is_refused(self, bad: str) -> None:
        with pytest.raises(ValueError, match="Message-ID"):
            build(message_id=bad)

    def test_idn_domain_is_written_in_ascii(self) -> None:
        built = build(to_email="jorg@bücher.example", domain="bücher.example")
        assert built.envelope_recipient == "jorg@xn--bcher-kva.example"
        assert parse(built.data)["To"].addresses[0].addr_spec == "jorg@xn--bcher-kva.example"
        assert built.message_id.endswith("@xn--bcher-kva.example>")

    def test_non_ascii_local_part_is_refused(self) -> None:
        """Such an address needs SMTPUTF8, which toma does not speak: say so, send nothing."""
        with pytest.raises(ValueError, match="SMTPUTF8"):
            build(to_email="jörg@bücher.example")

    def test_envelope_is_the_plain_addresses(self) -> None:
        built = build(sender_email="<jane@example.com>", to_email="mira@example.org")
        assert (built.envelope_sender, built.envelope_recipient) == (
            "jane@example.com",
            "mira@example.org",
        )

    @pytest.mark.parametrize(
        ("date", "header"),
        [
            (WHEN, "Mon, 06 May 2024 09:01:00 +0200"),
            (datetime(2024, 12, 24, 16, 59, tzinfo=UTC), "Tue, 24 Dec 2024 16:59:00 +0000"),
        ],
    )
    def test_date_is_the_given_moment(self, date: datetime, header: str) -> None:
        assert parse(build(date=date).data)["Date"] == header

    def test_naive_date_is_refused(self) -> None:
        with pytest.raises(ValueError, match="aware"):
            build(date=datetime(2024, 5, 6, 9, 1))


class TestThreadingAndUnsubscribe:
    def test_reply_headers_thread_the_message(self) -> None:
        parsed = parse(
            build(
                in_reply_to="<parent@example.org>",
                references=["<root@example.org>", "<parent@example.org>"],
            ).data
        )
        assert parsed["In-Reply-To"] == "<parent@example.org>"
        assert parsed["References"] == "<root@example.org> <parent@example.org>"

    def test_in_reply_to_joins_references(self) -> None:
        parsed = parse(
            build(in_reply_to="<parent@example.org>", references=["<root@example.org>"]).data
        )
        assert parsed["References"] == "<root@example.org> <parent@example.org>"

    def test_unusable_inbound_ids_are_left_out(self) -> None:
        """Ids come from other people's mail: a broken one must not break the reply."""
        data = build(
            in_reply_to="<a@b>\r\nBcc: x@example.com",
            references=["<ok@example.org>", "bad id", "<x@y>\nBcc: z"],
        ).data
        parsed = parse(data)
        assert parsed.get_all("Bcc") is None
        assert parsed["In-Reply-To"] is None
        assert parsed["References"] == "<ok@example.org>"

    def test_list_unsubscribe_with_one_click(self) -> None:
        parsed = parse(
            build(
                list_unsubscribe=[
                    "mailto:unsubscribe@example.com?subject=u",
                    "https://example.com/u/abc",
                ],
                list_unsubscribe_post=True,
            ).data
        )
        assert (
            parsed["List-Unsubscribe"]
            == "<mailto:unsubscribe@example.com?subject=u>, <https://example.com/u/abc>"
        )
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    def test_one_uri_may_be_given_as_a_string(self) -> None:
        parsed = parse(build(list_unsubscribe="mailto:u@example.com").data)
        assert parsed["List-Unsubscribe"] == "<mailto:u@example.com>"
        assert parsed["List-Unsubscribe-Post"] is None

    @pytest.mark.parametrize(
        ("uris", "post"),
        [
            (["mailto:u@example.com"], True),
            (None, True),
            (["https://example.com/u\r\nBcc: x@example.com"], False),
            (["javascript:alert(1)"], False),
            (["https://example.com/a b"], False),
        ],
    )
    def test_bad_unsubscribe_is_refused(self, uris: list[str] | None, post: bool) -> None:
        with pytest.raises(ValueError, match=r"List-Unsubscribe|one-click"):
            build(list_unsubscribe=uris, list_unsubscribe_post=post)


@pytest.mark.parametrize(
    "to_name", ["Mira Keller", "Zoë Ångström", "A" * 70, "Bob O'Brien", "山田太郎", ""]
)
@pytest.mark.parametrize(
    "subject",
    [
        "Hello",
        "Grüße – à bientôt 👋",
        "x" * 120,
        "Re: " + "word " * 20,
        "Good to meet you at the Hamburg Product Summit on Tuesday",
    ],
)
def test_headers_are_folded_exactly_as_compat32_folds_them(
    monkeypatch: pytest.MonkeyPatch, to_name: str, subject: str
) -> None:
    """Skipping the Header machinery for short ASCII lines changes no byte."""
    import re
    from email.policy import compat32

    import toma.mail.mime as message

    def headers() -> bytes:
        rendered = Rendered(subject=subject, text="hi\n", html="<p>hi</p>", front={}, template="t")
        built = message.build_message(
            rendered,
            sender_name="Alex Example",
            sender_email="alex@example.com",
            to_name=to_name,
            to_email="p1@example.org",
            date=datetime(2026, 3, 2, tzinfo=UTC),
            domain="example.com",
            message_id="<fixed@example.com>",
            list_unsubscribe=[
                "mailto:alex@example.com?subject=unsubscribe%20" + "t" * 40,
                "https://toma.example.com/u/" + "x" * 60,
            ],
            list_unsubscribe_post=True,
        )
        head = built.data.split(b"\r\n\r\n")[0]
        return re.sub(rb'boundary="[^"]+"', b"", head)

    fast = headers()
    monkeypatch.setattr(message, "_POLICY", compat32.clone(linesep="\r\n", max_line_length=78))
    assert fast == headers()


# --------------------------------------------------------------------------- composing


def composer_project(tmp_path: Any, *, signer: bool = True) -> Any:
    from toma.config import load_config
    from toma.mail.compose import Composer
    from toma.mail.unsubscribe import Unsubscribe

    folder = tmp_path / "templates"
    (folder / "layouts").mkdir(parents=True)
    (folder / "layouts" / "default.html").write_text("<html><body>{{ body }}</body></html>\n")
    (folder / "note.md").write_text(
        "---\nsubject: Hello {{ contact.first_name }}\n---\nHi {{ contact.first_name }},\n\nJane\n"
    )
    (tmp_path / "config.toml").write_text(
        '[owner]\nname = "Jane Doe"\nemail = "jane@example.com"\ntimezone = "UTC"\n'
        'postal_address = "1 Harbour Road, Kiel"\n'
        '[paths]\ntemplates = "templates"\n'
        '[unsubscribe]\nbase_url = "https://toma.example.com"\n'
    )
    config = load_config(tmp_path / "config.toml")
    links = (
        Unsubscribe(
            secret=b"s" * 32, base_url="https://toma.example.com", mailto="jane@example.com"
        )
        if signer
        else None
    )
    return Composer(config, unsubscribe=links)


def compose(composer: Any, way_out: str) -> EmailMessage:
    from toma.core.contacts import make_contact

    mira = make_contact("mira@example.org", first_name="Mira")
    built = composer.compose("note.md", mira, now=WHEN, unsubscribe=way_out)
    return parse(built.data)


def text_and_html(message: EmailMessage) -> tuple[str, str]:
    plain, html = message.get_body(("plain",)), message.get_body(("html",))
    assert plain is not None and html is not None
    return (plain.get_content().replace("\r\n", "\n"), html.get_content().replace("\r\n", "\n"))


def test_a_personal_note_has_no_list_headers_and_no_footer(tmp_path: Any) -> None:
    message = compose(composer_project(tmp_path), "none")
    assert "List-Unsubscribe" not in message and "List-Unsubscribe-Post" not in message
    text, html = text_and_html(message)
    assert text == "Hi Mira,\n\nJane\n"
    assert "Kiel" not in html and "nsubscribe" not in html


def test_headers_only_add_the_list_headers(tmp_path: Any) -> None:
    message = compose(composer_project(tmp_path), "headers")
    assert "mailto:jane@example.com" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    text, html = text_and_html(message)
    assert text == "Hi Mira,\n\nJane\n"
    assert "Kiel" not in html


def test_a_footer_is_in_both_parts(tmp_path: Any) -> None:
    """The postal address and the link, after the body, in the text and in the HTML."""
    message = compose(composer_project(tmp_path), "footer")
    assert "https://toma.example.com/u/" in message["List-Unsubscribe"]
    text, html = text_and_html(message)
    body, _, footer = text.partition("\n-- \n")
    assert body == "Hi Mira,\n\nJane\n"
    assert footer.startswith(
        "1 Harbour Road, Kiel\nRather not hear from me? Unsubscribe: https://toma.example.com/u/"
    )
    assert (
        html.index("Jane</p>")
        < html.index("1 Harbour Road, Kiel<br>")
        < html.index('href="https://toma.example.com/u/')
        < html.index("</body>")
    )


@pytest.mark.parametrize("way_out", ["headers", "footer"])
def test_a_way_out_without_the_signer_is_an_error(tmp_path: Any, way_out: str) -> None:
    """Never a message sent without the unsubscribe it should carry."""
    from toma.errors import TemplateError, TomaError

    with pytest.raises(TomaError) as caught:
        compose(composer_project(tmp_path, signer=False), way_out)
    assert not isinstance(caught.value, TemplateError)  # not held as a template problem
    assert caught.value.contact == "mira@example.org"
    assert "unsubscribe" in caught.value.message


def test_the_same_message_built_twice_differs_only_in_message_id(tmp_path: Any) -> None:
    """The MIME boundary comes from the parts, not from chance."""
    from toma.core.contacts import make_contact

    composer = composer_project(tmp_path)
    mira = make_contact("mira@example.org", first_name="Mira")
    first, second = (
        composer.compose("note.md", mira, now=WHEN, unsubscribe="footer") for _ in range(2)
    )
    assert first.message_id != second.message_id
    assert first.data.replace(first.message_id.encode(), b"") == second.data.replace(
        second.message_id.encode(), b""
    )
