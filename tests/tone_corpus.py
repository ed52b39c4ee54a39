"""The tone set (tests/corpus/tone, see SOURCES.md): real messages, personal or promotional."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from tests.replytext_corpus import load as load_replies

CORPUS = Path(__file__).resolve().parent / "corpus" / "tone"


@dataclass(frozen=True)
class Labelled:
    name: str
    promotional: bool
    text: str


def load() -> list[Labelled]:
    labels: dict[str, dict[str, str]] = json.loads(
        (CORPUS / "labels.json").read_text(encoding="utf-8")
    )
    found = [
        Labelled(
            name=name,
            promotional=entry["label"] == "promotional",
            text=(CORPUS / "messages" / f"{name}.txt").read_text(encoding="utf-8"),
        )
        for name, entry in labels.items()
    ]
    found.extend(
        Labelled(name=f"replytext/{reply.name}", promotional=False, text=reply.expected)
        for reply in load_replies()
    )
    return found
