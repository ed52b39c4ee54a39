"""MkDocs hook: the configuration reference, made at build time from the parser.

``<!-- config-reference -->`` in a page becomes the tables of
:func:`toma.config.reference.markdown`. The build fails while a key is accepted
without a description, or described without being accepted.
"""

from __future__ import annotations

from typing import Any

from toma.config.reference import markdown, reference

MARKER = "<!-- config-reference -->"


def on_page_markdown(text: str, page: Any, config: Any, files: Any) -> str:
    if MARKER not in text:
        return text
    found = reference()
    if found.undescribed or found.unknown:
        raise SystemExit(
            f"config reference: no description for {found.undescribed}; "
            f"described but not accepted: {found.unknown}"
        )
    return text.replace(MARKER, markdown(found))
