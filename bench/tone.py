"""How well the tone check tells promotional mail from personal notes, on tests/corpus/tone.

    .venv/bin/python bench/tone.py [--show]

A message is flagged when toma.core.tone finds any reason it reads like a
pitch. Prints precision (flagged messages that are truly promotional), recall
(promotional messages flagged) and, with --show, every flagged or missed one.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.tone_corpus import load

from toma.core.tone import pitch_findings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", action="store_true", help="print each flagged or missed message")
    args = parser.parse_args()
    messages = load()
    true_pos = false_pos = false_neg = 0
    for message in messages:
        findings = pitch_findings(message.text)
        flagged = bool(findings)
        true_pos += flagged and message.promotional
        false_pos += flagged and not message.promotional
        false_neg += message.promotional and not flagged
        if args.show and (flagged or message.promotional):
            label = "promotional" if message.promotional else "personal"
            reasons = "; ".join(f"line {f.line}: {f.reason}" for f in findings) or "not flagged"
            print(f"  {message.name} ({label}): {reasons}")
    promotional = sum(m.promotional for m in messages)
    flagged = true_pos + false_pos
    print(
        f"messages: {len(messages)} "
        f"({promotional} promotional, {len(messages) - promotional} personal)"
    )
    precision = true_pos / flagged if flagged else 1.0
    print(f"precision: {true_pos}/{flagged} = {precision:.1%}")
    print(f"recall:    {true_pos}/{promotional} = {true_pos / promotional:.1%}")


if __name__ == "__main__":
    main()
