"""The reply-text corpus (tests/corpus/replytext, see SOURCES.md), and how a reading is judged.

A reading is right when it and the expected text, whitespace folded, are at
least 90 % alike (``difflib``); it drops the writer's words when a word of the
expected text is not in it.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from difflib import SequenceMatcher
from pathlib import Path

CORPUS = Path(__file__).resolve().parent / "corpus" / "replytext"
SIMILAR = 0.9


@dataclass(frozen=True)
class Reply:
    name: str
    part: str
    language: str
    text: str
    expected: str


def load() -> list[Reply]:
    listed: dict[str, dict[str, str]] = json.loads(
        (CORPUS / "expected.json").read_text(encoding="utf-8")
    )
    return [
        Reply(
            name=name,
            part=entry["part"],
            language=entry["language"],
            text=(CORPUS / "messages" / f"{name}.txt").read_text(encoding="utf-8"),
            expected=entry["expected"],
        )
        for name, entry in listed.items()
    ]


def fold(text: str) -> str:
    return " ".join(text.split())


def matches(got: str, expected: str) -> bool:
    return SequenceMatcher(None, fold(got), fold(expected), autojunk=False).ratio() >= SIMILAR


def _words(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.lower()))


def missing_words(got: str, expected: str) -> set[str]:
    """Words of the writer's own text that the reading lost."""
    return _words(expected) - _words(got)
