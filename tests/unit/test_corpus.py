"""The classifier measured on real-world messages (tests/corpus, see SOURCES.md).

These are the figures the release note quotes: the share of messages given the
right class, and the share of bounces whose failed recipients are named right.
The expectations in expected.json were read off the messages by a person, not
produced by the classifier.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from toma.core.reading import bounces as bounces_module
from toma.core.reading.classify import Reading, read_message

CORPUS = Path(__file__).resolve().parent.parent / "corpus"
EXPECTED: dict[str, dict[str, object]] = json.loads((CORPUS / "expected.json").read_text())
KINDS = ("reply", "auto-reply", "bounce", "unsubscribe", "unknown")

CLASS_TARGET = 0.95
RECIPIENT_TARGET = 0.95


def _recipients_right(expected: dict[str, object], reading: Reading) -> bool:
    want = set(expected["recipients"])  # type: ignore[arg-type]
    allowed = want | set(expected.get("also", []))  # type: ignore[arg-type]
    return reading.kind == "bounce" and want <= set(reading.recipients) <= allowed


@pytest.fixture(scope="module")
def readings() -> dict[str, Reading]:
    return {name: read_message((CORPUS / name).read_bytes()) for name in EXPECTED}


def _table(readings: dict[str, Reading]) -> str:
    totals: Counter[str] = Counter()
    right: Counter[str] = Counter()
    wrong: list[str] = []
    for name, expected in EXPECTED.items():
        kind = str(expected["class"])
        totals[kind] += 1
        reading = readings[name]
        if reading.kind == kind:
            right[kind] += 1
        else:
            wrong.append(f"  {name}: {reading.kind} ({reading.reason}), expected {kind}")
    rows = [
        f"  {kind:<12} {right[kind]:>4}/{totals[kind]:<4} {right[kind] / totals[kind]:7.1%}"
        for kind in KINDS
        if totals[kind]
    ]
    return "\n".join(["class accuracy by class:", *rows, "misclassified:", *wrong])


def test_every_listed_message_is_there_and_every_message_is_listed() -> None:
    on_disk = {p.relative_to(CORPUS).as_posix() for p in CORPUS.glob("*/*.eml")}
    assert on_disk == set(EXPECTED)


def test_every_source_is_described() -> None:
    sources = (CORPUS / "SOURCES.md").read_text()
    for name in EXPECTED:
        prefix = name.split("/", 1)[1].split("-", 1)[0]
        assert f"`{prefix}-" in sources, prefix


def test_corpus_is_real_sized() -> None:
    kinds = Counter(str(e["class"]) for e in EXPECTED.values())
    assert len(EXPECTED) >= 150
    assert kinds["bounce"] >= 60
    assert len({e["mta"] for e in EXPECTED.values() if e["class"] == "bounce"}) >= 10


def test_class_accuracy(readings: dict[str, Reading]) -> None:
    """At least 95 % of the corpus is given its true class."""
    right = sum(readings[n].kind == e["class"] for n, e in EXPECTED.items())
    accuracy = right / len(EXPECTED)
    if accuracy < CLASS_TARGET:
        pytest.fail(f"class accuracy {accuracy:.1%} < {CLASS_TARGET:.0%}\n{_table(readings)}")


def test_failed_recipient_accuracy(readings: dict[str, Reading]) -> None:
    """For at least 95 % of the bounces, exactly the failed addresses are named."""
    bounces = {n: e for n, e in EXPECTED.items() if e["class"] == "bounce"}
    wrong = [
        f"  {n}: {sorted(readings[n].recipients)} ({readings[n].kind}), expected {e['recipients']}"
        for n, e in bounces.items()
        if not _recipients_right(e, readings[n])
    ]
    accuracy = 1 - len(wrong) / len(bounces)
    if accuracy < RECIPIENT_TARGET:
        # Without flufl.bounce the non-DSN formats fall back to our own text
        # rules alone, which name the recipients of about 89 % of the corpus.
        hint = "" if bounces_module.all_failures else " (flufl.bounce is not installed)"
        pytest.fail(
            f"recipient accuracy {accuracy:.1%} < {RECIPIENT_TARGET:.0%}{hint}\n" + "\n".join(wrong)
        )


def test_hard_or_soft_accuracy(readings: dict[str, Reading]) -> None:
    """Hard and soft bounces are told apart for at least 90 % of the bounces that say which."""
    judged = {n: e for n, e in EXPECTED.items() if e["class"] == "bounce" and e["hard"] is not None}
    wrong = [
        f"  {n}: hard={readings[n].hard}, expected {e['hard']}"
        for n, e in judged.items()
        if readings[n].hard != e["hard"]
    ]
    assert len(wrong) / len(judged) <= 0.10, "\n".join(wrong)


def test_return_dates(readings: dict[str, Reading]) -> None:
    """Every auto-reply in the corpus gets the return date it states, or none if it states none."""
    for name, expected in EXPECTED.items():
        if expected["class"] == "auto-reply" and readings[name].kind == "auto-reply":
            got = readings[name].back_on
            assert (got.isoformat() if got else None) == expected["back_on"], name
