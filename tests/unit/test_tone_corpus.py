"""The tone check on real messages (tests/corpus/tone, see SOURCES.md): few false alarms.

A warning the owner learns to ignore is worse than none, so the aim is
precision: of the messages flagged, at least 90 % are truly promotional.
"""

from __future__ import annotations

from tests.tone_corpus import load
from toma.core.tone import pitch_findings

MESSAGES = load()


def test_the_set_is_labelled_both_ways() -> None:
    assert sum(m.promotional for m in MESSAGES) >= 5
    assert sum(not m.promotional for m in MESSAGES) >= 75


def test_precision_and_recall() -> None:
    flagged = [m for m in MESSAGES if pitch_findings(m.text)]
    false_alarms = [m.name for m in flagged if not m.promotional]
    assert len(flagged) - len(false_alarms) >= 0.9 * len(flagged), false_alarms
    promotional = [m for m in MESSAGES if m.promotional]
    assert sum(m in flagged for m in promotional) >= 0.5 * len(promotional)
