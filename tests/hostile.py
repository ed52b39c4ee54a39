"""Hostile inbound messages, built from a few drawn parameters.

Hypothesis draws a *recipe* — a shape, a count, a repeated unit — and the message
is built from it by repetition, so a drawn example can be megabytes long without
Hypothesis generating megabytes (which would be slow and shrink badly). Each
shape is one way mail from a stranger has stopped, or could stop, a reader: many
header fields, huge or encoded subjects, deep or wide MIME nesting, broken MIME,
charsets no mail uses, binary junk, bounce and auto-reply shapes full of
garbage, very long lines. Sizes stay under about 3 MB so that a run stays quick.
"""

from __future__ import annotations

import base64

from hypothesis import strategies as st

# Pieces that made one rule or another slow when repeated: each was measured
# (see bench/hostile_mail.py), and each goes where a rule reads it.
NASTY_UNITS = [
    "\n",
    " ",
    "\t",
    "a",
    "1",
    "@",
    "<",
    ">",
    "<@>",
    "a@",
    "a@b.c ",
    "<a@b>",
    ".",
    "-",
    "mailbox",
    "recipient: ",
    "5.1.1 ",
    "550 ",
    "on ",
    "wrote ",
    "re: ",
    "> ",
    "From: x\n",
    "________\n",
    "-- \n",
    "=?utf-8?q?=C3=A4?=",
    "=?x?b?",
    "<!--",
    "<a>",
    "</b>",
    "<a b='",
    "&#",
    "<script>",
    "&amp",
    "\udcff",
    "\x00",
    "\u2028",
    "ä",
    "日本",
]
CHARSETS = [
    "utf-8",
    "us-ascii",
    "iso-8859-1",
    "x-klingon",
    "punycode",
    "idna",
    "utf-7",
    "utf-16",
    "base64_codec",
    "rot13",
    "",
    "unicode-1-1-utf-7",
    "\x00",
    'utf-8"; x="',
]


def _text(unit: str, count: int) -> str:
    return unit * count


def _head(
    extra: str = "", *, sender: str = "Ann <ann@example.org>", subject: str = "Re: hello"
) -> str:
    return (
        f"From: {sender}\r\nTo: alex@example.com\r\nSubject: {subject}\r\n"
        "Date: Tue, 03 Mar 2026 09:00:00 +0100\r\nMessage-ID: <hostile@example.org>\r\n"
        f"{extra}"
    )


def _encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


@st.composite
def many_headers(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(0, 60_000))
    distinct = draw(st.booleans())
    unit = draw(st.sampled_from(NASTY_UNITS)).replace("\n", " ")
    fields = "".join(f"X-H{i if distinct else ''}: {unit}{i}\r\n" for i in range(count))
    return _encode(_head(fields) + "\r\nHello\r\n")


@st.composite
def encoded_subject(draw: st.DrawFn) -> bytes:
    words = draw(st.integers(0, 120_000))
    charset = draw(st.sampled_from(CHARSETS))
    encoding = draw(st.sampled_from(["q", "b", "Q", "x"]))
    payload = draw(st.sampled_from(["=C3=A4", "w", "_", "=", "w6Q=", "????", ""]))
    subject = " ".join(f"=?{charset}?{encoding}?{payload}?=" for _ in range(words))
    return _encode(_head(subject=subject) + "\r\nHello\r\n")


@st.composite
def deep_nesting(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(0, 5000))
    kind = draw(st.sampled_from(["multipart/mixed", "message/rfc822", "multipart/report"]))
    layers = "".join(
        f"Content-Type: {kind}; boundary=b{i}\r\n\r\n--b{i}\r\n"
        if kind.startswith("multipart")
        else f"Content-Type: {kind}\r\n\r\n"
        for i in range(depth)
    )
    return _encode(_head() + layers + "Content-Type: text/plain\r\n\r\nHello\r\n")


@st.composite
def many_parts(draw: st.DrawFn) -> bytes:
    count = draw(st.integers(0, 60_000))
    inner = draw(
        st.sampled_from(
            [
                "",
                "Content-Type: text/plain\r\n",
                "Content-Type: text/html\r\n",
                "Content-Type: message/delivery-status\r\n",
            ]
        )
    )
    close = draw(st.booleans())
    parts = f"--b\r\n{inner}\r\nx\r\n" * count
    return _encode(
        _head('Content-Type: multipart/mixed; boundary="b"\r\n')
        + "\r\n"
        + parts
        + ("--b--\r\n" if close else "")
    )


@st.composite
def broken_mime(draw: st.DrawFn) -> bytes:
    boundary = draw(st.sampled_from(['"b"', "", '"', "b; boundary=c", '"' + "b" * 5000 + '"']))
    encoding = draw(st.sampled_from(["base64", "quoted-printable", "8bit", "x-uue", "base64x"]))
    charset = draw(st.sampled_from(CHARSETS))
    unit = draw(st.sampled_from(["SGVsbG8", "!!", "=", "=C3", "====", "\r\n", "--b\r\n", "ä"]))
    count = draw(st.integers(0, 400_000))
    ctype = draw(
        st.sampled_from(
            [
                "text/plain",
                "text/html",
                "multipart/alternative",
                "text",
                "message/delivery-status",
                "text/rfc822-headers",
            ]
        )
    )
    return _encode(
        _head(
            f"Content-Type: {ctype}; charset={charset}; boundary={boundary}\r\n"
            f"Content-Transfer-Encoding: {encoding}\r\n"
        )
        + "\r\n"
        + _text(unit, count)
    )


@st.composite
def binary_junk(draw: st.DrawFn) -> bytes:
    junk = draw(st.binary(min_size=1, max_size=200))
    count = draw(st.integers(1, 10_000))
    in_body = draw(st.booleans())
    if in_body:
        return _encode(_head() + "\r\n") + junk * count
    return b"Subject: " + junk * count + b"\r\n\r\nHello\r\n"


@st.composite
def bounce_with_garbage(draw: st.DrawFn) -> bytes:
    unit = draw(st.sampled_from(NASTY_UNITS))
    count = draw(st.integers(0, 200_000))
    dsn = draw(st.booleans())
    notice = _text(unit, count)
    head = _head(
        sender="Mail Delivery System <MAILER-DAEMON@mx.example.net>",
        subject="Undelivered Mail Returned to Sender",
    )
    if not dsn:
        return _encode(
            head + "Content-Type: text/plain\r\n\r\n"
            "This message could not be delivered.\r\n" + notice
        )
    return _encode(
        head + 'Content-Type: multipart/report; report-type=delivery-status; boundary="B"\r\n\r\n'
        f"--B\r\nContent-Type: text/plain\r\n\r\nDelivery failed.\r\n{notice}\r\n"
        "--B\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx\r\n\r\n"
        f"Final-Recipient: rfc822; {notice[:100_000]}\r\nAction: failed\r\nStatus: 5.1.1\r\n"
        "--B--\r\n"
    )


@st.composite
def auto_reply_with_garbage(draw: st.DrawFn) -> bytes:
    unit = draw(st.sampled_from([*NASTY_UNITS, "back on 10 December ", "12/10 ", "Monday "]))
    count = draw(st.integers(0, 200_000))
    return _encode(
        _head("Auto-Submitted: auto-replied\r\n", subject="Out of Office")
        + "\r\n"
        + _text(unit, count)
    )


@st.composite
def long_lines(draw: st.DrawFn) -> bytes:
    unit = draw(st.sampled_from(NASTY_UNITS))
    count = draw(st.integers(0, 300_000))
    where = draw(st.sampled_from(["body", "html", "subject", "from", "to", "references"]))
    text = _text(unit, count)
    if where == "body":
        return _encode(_head() + "\r\n" + text)
    if where == "html":
        return _encode(_head("Content-Type: text/html\r\n") + "\r\n" + text)
    if where == "subject":
        return _encode(_head(subject=text.replace("\n", " ")) + "\r\nHello\r\n")
    field = {"from": "From", "to": "To", "references": "References"}[where]
    return _encode(f"{field}: {text.replace(chr(10), ' ')}\r\n" + _head() + "\r\nHello\r\n")


@st.composite
def base64_text(draw: st.DrawFn) -> bytes:
    unit = draw(st.sampled_from(NASTY_UNITS))
    count = draw(st.integers(0, 400_000))
    body = base64.encodebytes(_encode(_text(unit, count))).decode()
    return _encode(
        _head("Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n")
        + "\r\n"
        + body
    )


SHAPES = [
    many_headers(),
    encoded_subject(),
    deep_nesting(),
    many_parts(),
    broken_mime(),
    binary_junk(),
    bounce_with_garbage(),
    auto_reply_with_garbage(),
    long_lines(),
    base64_text(),
]


def hostile_messages() -> st.SearchStrategy[bytes]:
    """One hostile message of any shape."""
    return st.one_of(SHAPES)
