"""A template file read: UTF-8 text, YAML front matter between ``---`` lines, a body.

Each front-matter key keeps the line it is written on, so an error about a key or
its value names the line a user sees in their editor.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from toma.errors import TemplateError

_YAML_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def read_text(file: Path) -> str:
    try:
        raw = file.read_bytes()
    except OSError as exc:
        raise TemplateError(f"cannot read the template: {exc.strerror}", file=file) from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise TemplateError("the file is not UTF-8 text", file=file, line=line) from None
    # Files written on Windows: lines are counted as the editor shows them.
    return text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")


@dataclass(frozen=True)
class Source:
    front: dict[str, Any]
    lines: dict[str, tuple[int, int]]  # key -> (line of the key, line of its value)
    body: str
    body_line: int


def split(file: Path, text: str) -> Source:
    lines = text.split("\n")
    if lines[0].rstrip() != "---":
        raise TemplateError(
            "a template starts with front matter: a line '---', 'subject: …', then '---' again",
            file=file,
            line=1,
        )
    for index in range(1, len(lines)):
        if lines[index].rstrip() == "---":
            close = index
            break
    else:
        raise TemplateError(
            "the front matter opened on line 1 is never closed by a line '---'", file=file, line=1
        )
    front, key_lines = _front_matter(file, "\n".join(lines[1:close]), lines)
    return Source(front, key_lines, "\n".join(lines[close + 1 :]), close + 2)


def _front_matter(
    file: Path, text: str, lines: list[str]
) -> tuple[dict[str, Any], dict[str, tuple[int, int]]]:
    # Front matter starts on line 2 of the file; PyYAML counts from 0.
    offset = 2
    loader = _YAML_LOADER(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + offset if mark is not None else 1
        problem = exc.problem or "cannot be read"
        context = f" ({exc.context})" if exc.context else ""
        hint = ""
        if 0 < line <= len(lines) and re.match(r"\s*\w+:\s*\{", lines[line - 1]):
            hint = ' — a value starting with {{ must be quoted: subject: "{{ … }}"'
        raise TemplateError(
            f"the front matter is not valid YAML: {problem}{context}{hint}", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise TemplateError(
            f"the front matter is not valid YAML: {exc}", file=file, line=1
        ) from None
    except RecursionError:
        # The pure-Python loader (and the C one's merge keys) descend once per level.
        raise TemplateError(
            "the front matter is nested too deeply to be read: write 'key: value' lines",
            file=file,
            line=offset,
        ) from None
    finally:
        loader.dispose()
    if node is None:  # nothing between the --- lines
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise TemplateError(
            "the front matter must be 'key: value' lines, such as 'subject: …'",
            file=file,
            line=offset,
        )
    key_lines: dict[str, tuple[int, int]] = {}
    for key_node, value_node in node.value:
        key = str(key_node.value)
        here = (key_node.start_mark.line + offset, value_node.start_mark.line + offset)
        if key in key_lines:
            raise TemplateError(
                f"{key} is given twice (lines {key_lines[key][0]} and {here[0]})",
                file=file,
                line=here[0],
                key=key,
            )
        key_lines[key] = here
    return {str(k): v for k, v in data.items()}, key_lines
