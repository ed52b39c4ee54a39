"""MIME messages: a rendered template made into bytes ready for SMTP or a Maildir.

Built with the compat32 ``email.message.Message``, ``email.header.Header``,
``email.charset`` and ``email.utils.formataddr``: they encode exactly as the
modern ``EmailMessage`` does for what toma sends (a text/plain + text/html
alternative, a dozen headers), in a seventh of the time (``bench/render_build.py``),
because the modern API parses and re-folds every header through its registry.

No value can add or alter a header. Every header value and display name is made
one line (control characters, CR, LF, NUL and Unicode line separators become
spaces) before it is encoded; an address that is not a plain ``local@domain`` is
refused. Non-ASCII text goes into RFC 2047 encoded words, which fold, so no line
of the result exceeds the 998-octet limit of RFC 5322.
"""

from __future__ import annotations

import hashlib
import itertools
import mimetypes
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from email import encoders
from email.charset import BASE64, QP, Charset
from email.header import Header
from email.message import Message
from email.mime.base import MIMEBase
from email.policy import Compat32
from email.utils import format_datetime, formataddr, make_msgid
from types import MappingProxyType
from typing import Any

from email_validator import EmailNotValidError, validate_email

from toma.hosts import is_loopback
from toma.mail.render import Rendered


# Serialised for the wire: CRLF line ends, headers folded at 78 columns.
class _Policy(Compat32):
    """compat32 with CRLF, skipping the Header machinery for a line that needs no folding.

    Folding goes through ``email.header.Header`` for every header, a third of the
    cost of building a message, though most headers are short ASCII lines that
    come out exactly as they went in.
    """

    def fold_binary(self, name: str, value: Any) -> bytes:
        if (
            isinstance(value, str)
            and value.isascii()
            and len(name) + 2 + len(value) <= (self.max_line_length or 78)
            and "\n" not in value
            and "\r" not in value
        ):
            return f"{name}: {value}{self.linesep}".encode("ascii")
        return super().fold_binary(name, value)


_POLICY = _Policy(linesep="\r\n", max_line_length=78)
_MAX_LINE = 998
_NO_HEADERS: Mapping[str, str] = MappingProxyType({})

# Everything that could end a header line or confuse a reader of one.
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_FIELD_NAME = re.compile(r"[!-9;-~]+")  # RFC 5322 ftext
_MSG_ID = re.compile(r"<[!-;=?-~]+>")  # printable ASCII, no spaces, no angle brackets inside
_URI = re.compile(r"[!-;=?-~]+")
# Headers this module writes itself; passing them in `headers` would duplicate or
# contradict them. Cc/Bcc: a message goes to its one envelope recipient only.
_RESERVED = frozenset(
    {
        "from",
        "to",
        "cc",
        "bcc",
        "subject",
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)


def _charset(encoding: int) -> Charset:
    charset = Charset("utf-8")
    charset.body_encoding = encoding
    return charset


_QUOTED_PRINTABLE = _charset(QP)
_BASE64 = _charset(BASE64)
_ASCII_BYTES = bytes(range(128))


@dataclass(frozen=True)
class Built:
    """A message ready to hand to a transport."""

    message_id: str  # with the angle brackets
    data: bytes  # RFC 5322, CRLF line ends
    envelope_sender: str  # MAIL FROM
    envelope_recipient: str  # RCPT TO
    subject: str = ""  # as its header says it, for the record of what was sent


def one_line(value: str) -> str:
    """``value`` as a single header-safe line: no line breaks or controls, spaces collapsed."""
    return " ".join(_CONTROL.sub(" ", value).split())


def _ascii_address(value: str, what: str) -> str:
    # Checked before stripping: a line break anywhere, even at the end, is refused.
    address = value if _CONTROL.search(value) else value.strip()
    if address.startswith("<") and address.endswith(">"):
        address = address[1:-1]
    local, at, domain = address.rpartition("@")
    if (
        not at
        or not local
        or not domain
        or _CONTROL.search(address)
        or any(ch.isspace() or ch in "<>,;" for ch in address)
    ):
        raise ValueError(f"{what} {value!r} is not a plain email address")
    if address.isascii():
        return address
    if not local.isascii():
        raise ValueError(f"{what} {value!r} has a non-ASCII local part, which needs SMTPUTF8")
    return f"{local}@{_ascii_domain(domain, what)}"


def _ascii_domain(domain: str, what: str) -> str:
    if domain.isascii():
        return domain
    try:
        checked = validate_email(f"postmaster@{domain}", check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(f"{what} domain {domain!r} is not valid: {exc}") from None
    return checked.ascii_domain


def _plain(text: str) -> bool:
    """Whether ``text`` can go as it is: ASCII, foldable, not taken for an encoded word."""
    return text.isascii() and "=?" not in text and all(len(word) <= 76 for word in text.split())


def _text_header(value: str, name: str) -> str | Header:
    text = one_line(value)
    if _plain(text):
        return text
    # Encoded words: RFC 2047 for non-ASCII, and the one way to fold a long word.
    return Header(text, "utf-8", header_name=name)


def _address_header(name: str, address: str, header: str) -> str | Header:
    display = one_line(name)
    if not display:
        return address
    if _plain(display):
        return formataddr((display, address))  # quotes names with specials: "Doe, Jane"
    value = Header(display, "utf-8", header_name=header)
    value.append(f"<{address}>", "us-ascii")
    return value


def _set(message: Message, name: str, value: str | Header) -> None:
    # compat32 folds a Header itself (encoded words included); typeshed knows only str.
    message[name] = value  # type: ignore[assignment]


def _message_id(value: str) -> str | None:
    text = value.strip()
    if not text.startswith("<"):
        text = f"<{text}>"
    return text if _MSG_ID.fullmatch(text) and len(text) < _MAX_LINE - 100 else None


def _unsubscribe(uris: str | Sequence[str]) -> list[str]:
    found = [uris] if isinstance(uris, str) else list(uris)
    checked = []
    for uri in found:
        text = uri.strip()
        if text.startswith("<") and text.endswith(">"):
            text = text[1:-1]
        if (
            not _URI.fullmatch(text)
            or len(text) > _MAX_LINE - 100
            or not text.lower().startswith(("mailto:", "https:", "http:"))
        ):
            raise ValueError(f"List-Unsubscribe needs mailto: or https: URIs, got {uri!r}")
        checked.append(text)
    return checked


def _body(text: str, subtype: str) -> Message:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        # Lone surrogates from a broken input: shown as "?" rather than refusing the message.
        text = text.encode("utf-8", "replace").decode("utf-8")
        data = text.encode("utf-8")
    high = len(data.translate(None, _ASCII_BYTES))
    # The headers are written out rather than left to MIMEText and set_charset, which
    # parse them again after every change (and add a MIME-Version to every part).
    part = Message()
    part["Content-Type"] = f'text/{subtype}; charset="utf-8"'
    if not high and all(len(line) <= _MAX_LINE for line in text.splitlines()):
        part["Content-Transfer-Encoding"] = "7bit"
        part.set_payload(text)
    elif high * 6 < len(data):
        # Mostly ASCII (Latin text, HTML markup): quoted-printable stays readable
        # and costs less than base64's third.
        part["Content-Transfer-Encoding"] = "quoted-printable"
        part.set_payload(_QUOTED_PRINTABLE.body_encode(text))
    else:
        # Mostly non-Latin script: base64 is the smaller.
        part["Content-Transfer-Encoding"] = "base64"
        part.set_payload(_BASE64.body_encode(text))
    return part


def _boundary(subtype: str, parts: Sequence[Message]) -> str:
    """A boundary none of ``parts`` contains, derived from them.

    Left to itself the generator invents one and compiles a regular expression
    per message to check it, a tenth of the cost of building a message. A token
    checked by a substring search is as safe: the parts are already encoded
    (base64, quoted-printable or short-lined 7bit text). It is a digest of the
    parts rather than random, so that the same message built twice (in the
    builder's worker process, by ``toma preview``) is the same bytes but for its
    Message-ID.
    """
    payloads = [
        leaf.get_payload() for part in parts for leaf in part.walk() if not leaf.is_multipart()
    ]
    seed = hashlib.sha256(subtype.encode("ascii"))
    for text in payloads:
        if isinstance(text, str):
            seed.update(text.encode("utf-8", "surrogatepass"))
        seed.update(b"\0")
    for attempt in itertools.count():
        digest = seed.copy()
        digest.update(str(attempt).encode("ascii"))
        # 96 bits, short enough that the Content-Type needs no folding.
        boundary = f"=_{digest.hexdigest()[:24]}"
        if not any(isinstance(text, str) and boundary in text for text in payloads):
            return boundary
    raise AssertionError("unreachable")  # pragma: no cover - count() never ends


def _content_type(subtype: str, parts: Sequence[Message]) -> str:
    return f'multipart/{subtype}; boundary="{_boundary(subtype, parts)}"'


def _multipart(subtype: str, parts: Sequence[Message]) -> Message:
    container = Message()
    container["Content-Type"] = _content_type(subtype, parts)
    for part in parts:
        container.attach(part)
    return container


def _attachment(name: str, data: bytes) -> MIMEBase:
    kind, _ = mimetypes.guess_type(name)
    maintype, _, subtype = (kind or "application/octet-stream").partition("/")
    part = MIMEBase(maintype, subtype)
    del part["MIME-Version"]  # said once, at the top
    part.set_payload(data)
    encoders.encode_base64(part)
    # RFC 2231 encoding keeps a non-ASCII file name intact and out of other headers.
    part.add_header("Content-Disposition", "attachment", filename=("utf-8", "", one_line(name)))
    return part


def _one_click_uri(uri: str) -> bool:
    """https, or http to this machine (a local trial, the tests): never clear text abroad."""
    from urllib.parse import urlsplit

    parts = urlsplit(uri)
    if parts.scheme.lower() == "https":
        return True
    return parts.scheme.lower() == "http" and is_loopback(parts.hostname or "")


def build_message(
    rendered: Rendered,
    *,
    sender_name: str,
    sender_email: str,
    to_name: str,
    to_email: str,
    message_id: str | None = None,
    date: datetime,
    domain: str,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    headers: Mapping[str, str] = _NO_HEADERS,
    list_unsubscribe: str | Sequence[str] | None = None,
    list_unsubscribe_post: bool = False,
    attachments: Sequence[tuple[str, bytes]] = (),
) -> Built:
    """``rendered`` as a multipart/alternative message (text, then HTML), serialised.

    With ``attachments`` (file name, bytes), the alternative goes inside a
    multipart/mixed followed by each file (an invoice's PDF).

    ``domain`` names the right-hand side of a new Message-ID. ``in_reply_to`` and
    ``references`` come from mail someone else wrote: an unusable id is left out
    rather than failing the reply. ``list_unsubscribe`` is one URI or several
    (mailto:, https:); ``list_unsubscribe_post`` adds RFC 8058 one-click, which
    needs an https URI. Raises ValueError for an address, header name, date or
    URI that cannot be used.
    """
    if date.tzinfo is None or date.utcoffset() is None:
        raise ValueError("the Date needs an aware datetime: a naive one has no zone to write")
    sender = _ascii_address(sender_email, "sender")
    recipient = _ascii_address(to_email, "recipient")
    if _CONTROL.search(domain) or not domain.strip():
        raise ValueError(f"{domain!r} cannot be a Message-ID domain")
    if message_id is None:
        msgid = make_msgid(domain=_ascii_domain(domain.strip(), "Message-ID"))
    else:
        given = _message_id(message_id)
        if given is None:
            raise ValueError(f"{message_id!r} cannot be a Message-ID")
        msgid = given

    texts = [_body(rendered.text, "plain"), _body(rendered.html, "html")]
    if attachments:
        parts = [
            _multipart("alternative", texts),
            *(_attachment(name, data) for name, data in attachments),
        ]
        content_type = _content_type("mixed", parts)
    else:
        parts = texts
        content_type = _content_type("alternative", parts)

    # The envelope headers first and the MIME ones last, as a person reading the
    # source (`toma preview`) expects.
    message = Message()
    _set(message, "From", _address_header(sender_name, sender, "From"))
    _set(message, "To", _address_header(to_name, recipient, "To"))
    _set(message, "Subject", _text_header(rendered.subject, "Subject"))
    message["Date"] = format_datetime(date)
    message["Message-ID"] = msgid
    parent = _message_id(in_reply_to) if in_reply_to else None
    if parent:
        message["In-Reply-To"] = parent
    chain = [found for ref in references if (found := _message_id(ref))]
    if parent and parent not in chain:
        chain.append(parent)
    if chain:
        message["References"] = " ".join(chain)
    if list_unsubscribe:
        uris = _unsubscribe(list_unsubscribe)
        message["List-Unsubscribe"] = ", ".join(f"<{uri}>" for uri in uris)
        if list_unsubscribe_post:
            if not any(_one_click_uri(uri) for uri in uris):
                raise ValueError("one-click unsubscribe (RFC 8058) needs an https: URI")
            message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    elif list_unsubscribe_post:
        raise ValueError("List-Unsubscribe-Post needs a List-Unsubscribe URI")
    for name, value in headers.items():
        if not _FIELD_NAME.fullmatch(name) or name.lower() in _RESERVED:
            raise ValueError(f"{name!r} cannot be given as an extra header")
        _set(message, name, _text_header(value, name))
    message["MIME-Version"] = "1.0"
    message["Content-Type"] = content_type
    for part in parts:
        message.attach(part)
    return Built(
        message_id=msgid,
        data=message.as_bytes(policy=_POLICY),
        envelope_sender=sender,
        envelope_recipient=recipient,
        # As its header says it: a control character in a record is nobody's to read,
        # and one PostgreSQL cannot store (NUL) would fail the write of the whole send.
        subject=one_line(rendered.subject),
    )
