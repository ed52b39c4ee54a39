"""The text a person reads of a message: HTML made plain, and a body's readable text.

Pure and bounded like :mod:`toma.core.reading.mimetext`: the markup is fed to the
parser in slices, with the per-message budget checked in between, and a parse
is cached for the few readers of one message's HTML part.
"""

from __future__ import annotations

import functools
import html
import re
from html.parser import HTMLParser

from toma.core.reading.mimetext import SLICE, Body, Check, no_check


class _HtmlText(HTMLParser):
    """HTML to plain text, keeping line structure and leaving quoted history out.

    Quoted history in HTML mail lives in ``<blockquote>`` and in the wrappers
    clients put around it (Gmail's ``gmail_quote``, Outlook's ``divRplyFwdMsg``,
    Yahoo's ``yahoo_quoted``); their content is dropped here so that the text
    rules afterwards only see what the person wrote.
    """

    _BLOCK = frozenset(
        {
            "p",
            "div",
            "br",
            "tr",
            "li",
            "h1",
            "h2",
            "h3",
            "h4",
            "h5",
            "h6",
            "table",
            "ul",
            "ol",
            "pre",
            "hr",
            "blockquote",
            "section",
            "article",
        }
    )
    _SKIP = frozenset({"style", "script", "head", "title"})
    _QUOTE_MARKERS = (
        "gmail_quote",
        "yahoo_quoted",
        "divrplyfwdmsg",
        "moz-cite-prefix",
        "ms-outlook-quote",
        "appendonsend",
        "protonmail_quote",
        "zmail_extra",
    )
    _VOID = frozenset({"br", "hr", "img", "meta", "link", "input", "col", "area", "base", "wbr"})

    def __init__(self, *, keep_quotes: bool) -> None:
        super().__init__(convert_charrefs=True)
        self.keep_quotes = keep_quotes
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []
        self.open: dict[str, int] = {}
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
        self.open[tag] = self.open.get(tag, 0) + 1
        if hide:
            self.hidden += 1

    def handle_endtag(self, tag: str) -> None:
        tag = tag.lower()
        if tag in self._BLOCK:
            self.out.append("\n")
        if not self.open.get(tag):
            # Nothing to close: looking down the stack for it would make a run of
            # stray end tags quadratic. What is looked past below is closed, so the
            # search costs each open tag at most once.
            return
        while self.stack:
            name, hidden = self.stack.pop()
            self.open[name] -= 1
            if hidden:
                self.hidden -= 1
            if name == tag:
                break

    def handle_data(self, data: str) -> None:
        if not self.hidden:
            self.out.append(data)


# A tag, for stripping markup without a parser. "[^<>]" rather than "[^>]": a run
# of "<" without ">" then costs one pass, not a scan to the end from each "<".
_TAG = re.compile(r"<[^<>]*>")


def html_to_text(markup: str, *, keep_quotes: bool = False, check: Check = no_check) -> str:
    """HTML made plain text. *markup* is fed in slices, *check* called in between.

    The parser is never closed: closing makes it work through an unfinished
    construct at the end ("<!--" never ended) one character at a time, rescanning
    the rest each time — quadratic in Python 3.11. What it has not taken by then
    is stripped of tags instead.
    """
    return _html_to_text(markup, keep_quotes, check)


# The bounce check, the notice of an auto-reply and the search for a returned
# Message-ID each read the same HTML part of one message: parsed once, not three
# times (256 K characters of tags take a second or two to parse).
@functools.lru_cache(maxsize=4)
def _html_to_text(markup: str, keep_quotes: bool, check: Check) -> str:
    parser = _HtmlText(keep_quotes=keep_quotes)
    try:
        for start in range(0, len(markup), SLICE):
            check()
            parser.feed(markup[start : start + SLICE])
        rest = parser.rawdata
        if rest and parser.cdata_elem is None and not parser.hidden:
            parser.out.append(html.unescape(_TAG.sub(" ", rest)))
    except Exception:  # noqa: BLE001 - html.parser is lenient, but never let markup raise
        return html.unescape(_TAG.sub(" ", markup))
    text = "".join(parser.out).replace("\xa0", " ")
    lines = [" ".join(line.split()) for line in text.splitlines()]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


def readable_text(b: Body, *, keep_quotes: bool = False, check: Check = no_check) -> str:
    """The message text: the plain part if it says anything, else the HTML made plain."""
    if b.plain and b.plain.strip():
        return b.plain
    if b.html:
        return html_to_text(b.html, keep_quotes=keep_quotes, check=check)
    return b.plain or ""
