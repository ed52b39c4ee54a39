"""Safe reading of a parsed message: headers, addresses, ids, dates and text parts.

Everything here takes an already parsed :class:`email.message.Message` (compat32
policy, the most forgiving one) and never raises: inbound mail is hostile input,
and a header that cannot be decoded is reported as a problem, not an exception.
Big non-text parts are never decoded — reading a 20 MB attachment to find out
that a message is a reply would be slow for no gain.
"""

from __future__ import annotations

import binascii
import html
import quopri
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import Message
from email.utils import getaddresses, parsedate_to_datetime
from html.parser import HTMLParser

# A text part longer than this is read only up to this size: the new text of a
# reply, a bounce report or an out-of-office notice is always near the top.
TEXT_LIMIT = 256 * 1024

_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]+@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
    r"[A-Za-z]{2,63}"
)
_MSGID = re.compile(r"<[^<>\s]{1,998}>")


def fix_text(value: str) -> str:
    """Turn surrogate-escaped bytes (undecodable 8-bit header bytes) into real text."""
    if not any("\udc80" <= ch <= "\udcff" for ch in value):
        return value
    raw = value.encode("utf-8", "surrogateescape")
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        # Most 8-bit mail that is not UTF-8 is Windows-1252 or Latin-1.
        return raw.decode("cp1252", "replace")


def _raw_header(msg: Message, name: str) -> object:
    # raw_items() gives the value as parsed, 8-bit bytes still surrogate-escaped;
    # get() would already have turned them into U+FFFD.
    wanted = name.lower()
    for key, value in msg.raw_items():
        if key.lower() == wanted:
            return value
    return None


def header(msg: Message, name: str, problems: list[str] | None = None) -> str:
    """A header decoded from RFC 2047 words into one line of text; "" when absent."""
    try:
        raw = _raw_header(msg, name)
    except Exception:  # noqa: BLE001 - a header the parser itself chokes on is just unreadable
        if problems is not None:
            problems.append(f"unreadable {name} header")
        return ""
    if raw is None:
        return ""
    text = fix_text(str(raw))
    try:
        decoded = str(make_header(decode_header(text)))
    except Exception:  # noqa: BLE001 - LookupError, UnicodeError, HeaderParseError and kin
        if problems is not None:
            problems.append(f"undecodable {name} header")
        decoded = text
    return " ".join(fix_text(decoded).split())


def all_headers(msg: Message, name: str) -> list[str]:
    try:
        values = [v for k, v in msg.raw_items() if k.lower() == name.lower()]
    except Exception:  # noqa: BLE001 - see header()
        return []
    return [" ".join(fix_text(str(v)).split()) for v in values]


def is_address(text: str) -> bool:
    return bool(_ADDRESS.fullmatch(text)) and ".." not in text and len(text) <= 254


def normalise_address(text: str) -> str | None:
    """A lower-case bare address, or None if *text* does not hold exactly one usable one."""
    candidate = text.strip().strip("<>").strip().strip(".,;:").lower()
    if candidate.startswith("mailto:"):
        candidate = candidate[7:]
    return candidate if is_address(candidate) else None


def addresses(values: list[str]) -> list[str]:
    """Every usable address in some address headers, lower case, in order, once each."""
    found: list[str] = []
    try:
        pairs = getaddresses(values)
    except Exception:  # noqa: BLE001 - getaddresses is robust, but never trust it on garbage
        pairs = []
    for _, addr in pairs:
        norm = normalise_address(addr)
        if norm and norm not in found:
            found.append(norm)
    return found


def find_addresses(text: str) -> list[str]:
    """Addresses anywhere in free text, lower case, in order, once each."""
    found: list[str] = []
    for match in _ADDRESS.finditer(text):
        norm = normalise_address(match.group(0))
        if norm and norm not in found:
            found.append(norm)
    return found


def message_ids(value: str) -> tuple[str, ...]:
    ids = tuple(dict.fromkeys(_MSGID.findall(value)))
    if ids:
        return ids
    # Some clients drop the angle brackets; an id still has an "@" in it.
    bare = (f"<{tok}>" for tok in value.split() if "@" in tok and len(tok) < 998)
    return tuple(dict.fromkeys(bare))


def parse_date(value: str, problems: list[str]) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        problems.append(f"unreadable Date header: {value[:60]!r}")
        return None
    if parsed.tzinfo is None:
        # RFC 5322 "-0000" means "UTC, zone unknown"; any aware zone is better than none.
        parsed = parsed.replace(tzinfo=UTC)
    return parsed


def content_type(part: Message) -> str:
    try:
        return part.get_content_type().lower()
    except Exception:  # noqa: BLE001 - a garbled Content-Type header
        return "text/plain"


def param(part: Message, name: str) -> str:
    try:
        value = part.get_param(name)
    except Exception:  # noqa: BLE001 - see content_type()
        return ""
    if isinstance(value, tuple):
        value = value[2]
    return fix_text(str(value)).lower() if value else ""


def is_attachment(part: Message) -> bool:
    disposition = header(part, "Content-Disposition").lower()
    return disposition.startswith("attachment")


def raw_payload(part: Message) -> str:
    """The payload as parsed, before any decoding.

    Not get_payload(): for 8-bit text it already decodes by the declared charset with
    "replace", which loses UTF-8 text sent under a wrong label.
    """
    payload = getattr(part, "_payload", "")
    return payload if isinstance(payload, str) else ""


def decode_part(part: Message, problems: list[str], limit: int = TEXT_LIMIT) -> str:
    """The text of a leaf part, decoded by its transfer encoding and charset, at most *limit*."""
    payload = raw_payload(part)
    if len(payload) > limit * 2:
        problems.append(f"{content_type(part)} part cut to {limit} characters")
        payload = payload[: limit * 2]
        payload = payload[: payload.rfind("\n") + 1] or payload
    encoding = header(part, "Content-Transfer-Encoding").lower()
    data = payload.encode("ascii", "surrogateescape") if payload.isascii() else None
    if data is None:
        data = payload.encode("utf-8", "surrogateescape")
    try:
        if "base64" in encoding:
            data = binascii.a2b_base64(_base64_lines(data))
        elif "quoted-printable" in encoding:
            data = quopri.decodestring(data)
    except (binascii.Error, ValueError):
        problems.append(f"broken {encoding} in a {content_type(part)} part")
    return decode_bytes(data[: limit * 4], param(part, "charset"), problems)[:limit]


def _base64_lines(data: bytes) -> bytes:
    # Keep only whole 4-character groups: a truncated or dirty last line should not
    # cost the lines before it.
    clean = re.sub(rb"[^A-Za-z0-9+/=]", b"", data)
    return clean[: len(clean) - len(clean) % 4]


_CHARSET_ALIASES = {
    "unicode-1-1-utf-7": "utf-7",
    "ks_c_5601-1987": "cp949",
    "x-sjis": "shift_jis",
    "iso-8859-8-i": "iso-8859-8",
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-unknown": "",
    "unknown-8bit": "",
    "us-ascii": "",
    "ascii": "",
}


def decode_bytes(data: bytes, charset: str, problems: list[str]) -> str:
    charset = _CHARSET_ALIASES.get(charset.strip().lower(), charset.strip().lower())
    if charset:
        try:
            return data.decode(charset)
        except LookupError:
            problems.append(f"unknown charset {charset!r}")
        except (UnicodeDecodeError, ValueError):
            # A wrong label is common (UTF-8 text sent as "iso-2022-jp"); try the usual suspects.
            problems.append(f"text does not match its charset {charset!r}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", "replace")


def walk(msg: Message, *, into_attached: bool = False) -> Iterator[Message]:
    """Leaf parts in order; attached messages (message/rfc822) are skipped unless asked."""
    stack: list[Message] = [msg]
    seen = 0
    while stack and seen < 500:  # a bound against pathological nesting
        part = stack.pop(0)
        seen += 1
        ctype = content_type(part)
        multipart, children = _children(part)
        if multipart and isinstance(children, list):
            if ctype == "message/rfc822" and not into_attached:
                yield part
                continue
            if ctype == "message/delivery-status":
                yield part
                continue
            stack[0:0] = [c for c in children if isinstance(c, Message)]
            continue
        yield part


def _children(part: Message) -> tuple[bool, object]:
    try:
        multipart = part.is_multipart()
        return multipart, (part.get_payload() if multipart else None)
    except Exception:  # noqa: BLE001 - a broken part is read as a leaf with nothing in it
        return False, None


@dataclass(frozen=True)
class Body:
    """The readable text of a message: its first plain part and its first HTML part."""

    plain: str | None
    html: str | None


def body(msg: Message, problems: list[str]) -> Body:
    plain: str | None = None
    rich: str | None = None
    for part in walk(msg):
        ctype = content_type(part)
        if is_attachment(part) and ctype not in {"text/plain", "text/html"}:
            continue
        if ctype == "text/plain" and plain is None and not is_attachment(part):
            plain = decode_part(part, problems)
        elif ctype == "text/html" and rich is None and not is_attachment(part):
            rich = decode_part(part, problems)
        if plain is not None and rich is not None:
            break
    media = ("image/", "audio/", "video/", "application/")
    if plain is None and rich is None and not _children(msg)[0] and not content_type(
        msg
    ).startswith(media):
        # No Content-Type at all, or something odd like "text": read it as text anyway.
        plain = decode_part(msg, problems)
    return Body(plain=plain, html=rich)


class _HtmlText(HTMLParser):
    """HTML to plain text, keeping line structure and leaving quoted history out.

    Quoted history in HTML mail lives in ``<blockquote>`` and in the wrappers
    clients put around it (Gmail's ``gmail_quote``, Outlook's ``divRplyFwdMsg``,
    Yahoo's ``yahoo_quoted``); their content is dropped here so that the text
    rules afterwards only see what the person wrote.
    """

    _BLOCK = frozenset({"p", "div", "br", "tr", "li", "h1", "h2", "h3", "h4", "h5", "h6",
                        "table", "ul", "ol", "pre", "hr", "blockquote", "section", "article"})
    _SKIP = frozenset({"style", "script", "head", "title"})
    _QUOTE_MARKERS = ("gmail_quote", "yahoo_quoted", "divrplyfwdmsg", "moz-cite-prefix",
                      "ms-outlook-quote", "appendonsend", "protonmail_quote", "zmail_extra")
    _VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})

    def __init__(self, *, keep_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_quotes = keep_quotes
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []
        self.hidden = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        tag = tag.lower()
        if tag in self._BLOCK:
            self.out.append("\n")
        if tag in self._VOID:
            return
        marker = " ".join(f"{k}={v}" for k, v in attrs if k in {"class", "id", "type"}).lower()
        hide = tag in self._SKIP or (
            not self.keep_quotes
            and (tag == "blockquote" or any(m in marker for m in self._QUOTE_MARKERS))
        )
        self.stack.append((tag, hide))
        if hide:
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag in self._BLOCK:
            self.out.append("\n")
        for index in range(len(self.stack) - 1, -1, -1):
            if self.stack[index][0] == tag:
                for _, hidden in self.stack[index:]:
                    if hidden:
                        self.hidden -= 1
                del self.stack[index:]
                break

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(data)


def html_to_text(markup: str, *, keep_quotes: bool = False) -> str:
    parser = _HtmlText(keep_quotes=keep_quotes)
    try:
        parser.feed(markup)
        parser.close()
    except Exception:  # noqa: BLE001 - html.parser is lenient, but never let markup raise
        return html.unescape(re.sub(r"<[^>]*>", " ", markup))
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def readable_text(b: Body, *, keep_quotes: bool = False) -> str:
    """The message text: the plain part if it says anything, else the HTML made plain."""
    if b.plain and b.plain.strip():
        return b.plain
    if b.html:
        return html_to_text(b.html, keep_quotes=keep_quotes)
    return b.plain or ""
