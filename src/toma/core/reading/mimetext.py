"""Safe reading of a message: parsing, headers, addresses, ids, dates and text parts.

Theory of operation. Inbound mail is hostile input: whatever a stranger sends,
reading it must cost time linear in its size, and little of it. :func:`parse`
feeds the bytes to the standard library's parser (compat32, the most forgiving
policy) in slices, so a budget can be checked between them, and with a message
class that keeps only the first :data:`FIELD_LIMIT` header fields of each part.
Everything after that takes the parsed :class:`email.message.Message` and never
raises: a header that cannot be decoded is reported as a problem, not an exception.

The bounds, and why each is where it is (all far above what real mail needs —
the corpus in tests/corpus reads the same with them as without):

- :data:`READ_LIMIT` (10 MB): only the start of a bigger message is parsed. The
  new text of a reply, a bounce report or a notice is at the top; what lies past
  10 MB is attachments.
- :data:`FIELD_LIMIT` (1,000 header fields per part): real messages carry under
  a hundred, even after many relays; 200,000 fields once made header lookup
  quadratic and stopped all mail.
- :data:`VALUE_LIMIT` (16 KB of one header value decoded): RFC 5322 caps a line
  at 998 characters; a long References list is a few KB. Decoding RFC 2047 words
  is quadratic in the standard library, so this also bounds that cost.
- :data:`PART_LIMIT` (200 MIME parts parsed and walked) and :data:`DEPTH_LIMIT`
  (20 levels of nesting): a bounce with its returned message and attachments has
  about ten parts and three levels; deeper nesting only ever comes from attacks
  (the parser recurses, and fails past a thousand levels).
- :data:`TEXT_LIMIT` (256 K characters of one text part decoded): see there.
- :data:`LINE_LIMIT` (1,000 characters of one line matched by the line rules of
  :mod:`toma.core.reading.replytext` and :mod:`toma.core.reading.bounces`): attributions,
  separators and header lines are short; the line itself is kept whole.

Headers are indexed once (:class:`Headers`), by lower-case name, and decoded on
first use; before, each lookup scanned every field (10,000 fields: 4 s; 40,000:
95 s). Big non-text parts are never decoded — reading a 20 MB attachment to find
out that a message is a reply would be slow for no gain.
"""

from __future__ import annotations

import binascii
import codecs
import quopri
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesFeedParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

# The bounds on what is read of one message; the module docstring says why each.
READ_LIMIT = 10 * 1024 * 1024
FIELD_LIMIT = 1000
VALUE_LIMIT = 16 * 1024
PART_LIMIT = 200
DEPTH_LIMIT = 20
# A text part longer than this is read only up to this size: the new text of a
# reply, a bounce report or an out-of-office notice is always near the top.
TEXT_LIMIT = 256 * 1024
LINE_LIMIT = 1000

# The parser is fed this much at a time, and the budget checked in between.
SLICE = 32 * 1024
# The header index checks the budget every this many fields.
_CHECK_EVERY = 256

Check = Callable[[], None]
"""Raises :class:`OverBudget` when the reading budget is spent; called between steps."""


class OverBudget(BaseException):
    """The reading budget of a message is spent: stop reading it.

    A BaseException, as asyncio's CancelledError is, so that the ``except
    Exception`` that guard each step against hostile input let it through.
    """


def no_check() -> None:
    """The check of a reading without a budget."""


# The local part is bounded like the domain labels: with ``+`` a run of letters
# without an "@" cost a scan to its end from every position (16 KB of "a": 0.7 s).
_ADDRESS = re.compile(
    r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,254}@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+"
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


class _Bounded(Message):
    """A message part that keeps only its first :data:`FIELD_LIMIT` header fields."""

    dropped = 0

    def set_raw(self, name: str, value: Any) -> None:
        # The parser adds every field through here; past the limit they are counted only.
        if len(self._headers) >= FIELD_LIMIT:  # type: ignore[attr-defined]
            self.dropped += 1
            return
        super().set_raw(name, value)


class _Factory:
    """Makes the parts of one message, counting them."""

    def __init__(self) -> None:
        self.made = 0

    def __call__(self, policy: Any = None) -> Message:
        self.made += 1
        return _Bounded(policy) if policy is not None else _Bounded()


def parse(raw: bytes, problems: list[str], check: Check = no_check) -> Message:
    """Parse *raw* within the bounds; what is cut or left out is listed in *problems*.

    The parser is fed in slices with *check* called in between, and stops being fed
    once it has made :data:`PART_LIMIT` parts: what it has by then is the message.
    """
    if len(raw) > READ_LIMIT:
        problems.append(f"message cut to its first {READ_LIMIT // (1024 * 1024)} MB")
        raw = raw[:READ_LIMIT]
    factory = _Factory()
    parser = BytesFeedParser(factory, policy=policy.compat32)
    factory.made = 0  # the parser made one to try the factory out
    for start in range(0, len(raw), SLICE):
        check()
        parser.feed(raw[start : start + SLICE])
        if factory.made > PART_LIMIT:
            problems.append(f"more than {PART_LIMIT} MIME parts: the rest is not read")
            break
    msg = parser.close()
    check()
    _note_cuts(msg, problems)
    return msg


def _note_cuts(msg: Message, problems: list[str]) -> None:
    """List the header fields the parser left out, and parts nested too deep to be read."""
    dropped = 0
    too_deep = False
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < PART_LIMIT:
        part, depth = stack.pop()
        seen += 1
        dropped += getattr(part, "dropped", 0)
        multipart, children = _children(part)
        if multipart and isinstance(children, list):
            if depth >= DEPTH_LIMIT:
                too_deep = True
                continue
            stack.extend((c, depth + 1) for c in children if isinstance(c, Message))
    if dropped:
        problems.append(f"{dropped} header fields past the first {FIELD_LIMIT} ignored")
    if too_deep:
        problems.append(f"MIME parts nested deeper than {DEPTH_LIMIT} levels not read")


def decode_value(raw: object, name: str, problems: list[str] | None = None) -> str:
    """A raw header value decoded from RFC 2047 words into one line, at most VALUE_LIMIT long."""
    text = str(raw)
    if len(text) > VALUE_LIMIT:
        if problems is not None:
            problems.append(f"{name} header cut to {VALUE_LIMIT // 1024} KB")
        # At a space if there is one near the end, so as not to leave half an encoded word.
        text = text[:VALUE_LIMIT]
        space = text.rfind(" ", VALUE_LIMIT - 1024)
        text = text[:space] if space > 0 else text
    text = fix_text(text)
    try:
        decoded = str(make_header(decode_header(text)))
    except Exception:  # noqa: BLE001 - LookupError, UnicodeError, HeaderParseError and kin
        if problems is not None:
            problems.append(f"undecodable {name} header")
        decoded = text
    return " ".join(fix_text(decoded).split())


class Headers(Mapping[str, str]):
    """The header fields of a message, indexed once by lower-case name.

    ``headers[name]`` is the first field of that name, decoded (on first use, then
    kept); :meth:`every` gives every field of a name, undecoded but cut and unfolded.
    One pass over the fields: looking each name up in the message instead scanned
    every field per name, quadratic in their number.
    """

    def __init__(
        self, msg: Message, problems: list[str] | None = None, check: Check = no_check
    ) -> None:
        self._problems = problems
        self._raw: dict[str, list[object]] = {}
        self._decoded: dict[str, str] = {}
        try:
            # raw_items() gives the values as parsed, 8-bit bytes still surrogate-escaped;
            # get() would already have turned them into U+FFFD.
            for count, (key, value) in enumerate(msg.raw_items()):
                if count % _CHECK_EVERY == 0:
                    check()
                self._raw.setdefault(str(key).lower(), []).append(value)
        except Exception:  # noqa: BLE001 - a header the parser itself chokes on is just unreadable
            if problems is not None:
                problems.append("unreadable header fields")

    def __getitem__(self, name: str) -> str:
        if name not in self._decoded:
            self._decoded[name] = decode_value(self._raw[name][0], name, self._problems)
        return self._decoded[name]

    def __contains__(self, name: object) -> bool:
        return name in self._raw

    def __iter__(self) -> Iterator[str]:
        return iter(self._raw)

    def __len__(self) -> int:
        return len(self._raw)

    def every(self, name: str) -> list[str]:
        return [
            " ".join(fix_text(str(v)[:VALUE_LIMIT]).split())
            for v in self._raw.get(name.lower(), ())
        ]


def header(msg: Message, name: str, problems: list[str] | None = None) -> str:
    """A header of a part decoded into one line of text; "" when absent.

    For a part's few headers; the message's own are read through :class:`Headers`.
    """
    wanted = name.lower()
    try:
        raw = next((value for key, value in msg.raw_items() if key.lower() == wanted), None)
    except Exception:  # noqa: BLE001 - a header the parser itself chokes on is just unreadable
        if problems is not None:
            problems.append(f"unreadable {name} header")
        return ""
    if raw is None:
        return ""
    return decode_value(raw, name, problems)


def is_address(text: str) -> bool:
    return len(text) <= 254 and bool(_ADDRESS.fullmatch(text)) and ".." not in text


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


# Codecs Python knows that no mail is written in, and whose decoders are
# quadratic in the length of the input (punycode, and idna built on it).
_REFUSED_CODECS = frozenset({"punycode", "idna"})


def decode_bytes(data: bytes, charset: str, problems: list[str]) -> str:
    charset = _CHARSET_ALIASES.get(charset.strip().lower(), charset.strip().lower())
    if charset and _refused(charset):
        problems.append(f"unknown charset {charset!r}")
        charset = ""
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


def _refused(charset: str) -> bool:
    try:
        return codecs.lookup(charset).name in _REFUSED_CODECS
    except (LookupError, ValueError, TypeError):
        return False  # decode() reports an unknown charset itself


def walk(
    msg: Message, *, into_attached: bool = False, leaves: bool = True, check: Check = no_check
) -> Iterator[Message]:
    """Leaf parts in order; attached messages (message/rfc822) are skipped unless asked.

    At most :data:`PART_LIMIT` parts are looked at, and none nested deeper than
    :data:`DEPTH_LIMIT`. With ``leaves=False`` the containers are given too.
    """
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack and seen < PART_LIMIT:
        check()
        part, depth = stack.pop()
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
            if not leaves:
                yield part
            if depth < DEPTH_LIMIT:
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
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


def body(msg: Message, problems: list[str], check: Check = no_check) -> Body:
    plain: str | None = None
    rich: str | None = None
    for part in walk(msg, check=check):
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
    if (
        plain is None
        and rich is None
        and not _children(msg)[0]
        and not content_type(msg).startswith(media)
    ):
        # No Content-Type at all, or something odd like "text": read it as text anyway.
        plain = decode_part(msg, problems)
    return Body(plain=plain, html=rich)
