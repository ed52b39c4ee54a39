"""How well toma finds the new text of a reply, on the corpus in tests/corpus/replytext.

    .venv/bin/python bench/replytext.py [--part held-out|tuning|all] [--show]

For each part of the split: the share of replies whose new text matches the
expected one (similarity >= 0.9 after folding whitespace, see SOURCES.md there),
and the replies where one of the writer's own words was dropped. When the
libraries email-reply-parser and mail-parser-reply are installed (they are not
toma's dependencies: ``pip install email-reply-parser mail-parser-reply``), their
figures on the same messages are printed beside toma's.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.replytext_corpus import load, matches, missing_words

from toma.core.reading.replytext import new_text


def readers() -> dict[str, Callable[[str], str]]:
    found: dict[str, Callable[[str], str]] = {"toma": new_text}
    try:
        from email_reply_parser import EmailReplyParser

        found["email-reply-parser"] = EmailReplyParser.parse_reply
    except ImportError:
        print("(email-reply-parser is not installed)")
    try:
        from mailparser_reply import EmailReplyParser as MailParserReply
        from mailparser_reply.constants import MAIL_LANGUAGES

        parser = MailParserReply(languages=list(MAIL_LANGUAGES))
        found["mail-parser-reply"] = lambda text: str(parser.parse_reply(text=text))
    except ImportError:
        print("(mail-parser-reply is not installed)")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=["held-out", "tuning", "all"], default="all")
    parser.add_argument("--show", action="store_true", help="print toma's misses")
    args = parser.parse_args()
    corpus = load()
    parts = ["tuning", "held-out"] if args.part == "all" else [args.part]
    for part in parts:
        items = [item for item in corpus if item.part == part]
        print(f"\n{part}: {len(items)} replies")
        for name, read in readers().items():
            right = dropped = 0
            for item in items:
                try:
                    got = read(item.text)
                except Exception:  # noqa: BLE001 - a library that fails on a message reads it wrong
                    got = ""
                ok = matches(got, item.expected)
                right += ok
                lost = missing_words(got, item.expected)
                dropped += bool(lost)
                if args.show and name == "toma" and (not ok or lost):
                    print(f"  MISS {item.name} (lost {sorted(lost)[:8]})\n    got: {got!r}")
            print(
                f"  {name:<20} {right:>3}/{len(items)} = {right / len(items):6.1%} right, "
                f"{dropped} dropping the writer's words"
            )


if __name__ == "__main__":
    main()
