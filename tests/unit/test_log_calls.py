"""Every log event in src/toma names the event and carries its fields as fields.

`log.info("endpoint_started host=%s", host)` puts the host inside the event
text, where `--json` logs cannot find it. The rule: the message is an
event name (a string literal, or a name holding one such as a state), never
built from values, and values go in `extra=fields(...)` (see toma/logs.py).
"""

from __future__ import annotations

import ast
from pathlib import Path

SOURCE = Path(__file__).parents[2] / "src" / "toma"
LEVELS = {"debug", "info", "warning", "error", "exception", "critical", "log"}


def offending_calls(tree: ast.AST, name: str) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in LEVELS
            and isinstance(node.func.value, ast.Name)
            and node.func.value.id in {"log", "logger", "logging"}
        ):
            continue
        args = node.args[1:] if node.func.attr == "log" else node.args
        where = f"{name}:{node.lineno}"
        if not args:
            found.append(f"{where}: no event name")
            continue
        message, *rest = args
        if isinstance(message, ast.JoinedStr | ast.BinOp | ast.Call):
            found.append(f"{where}: the event is built from values (an f-string, % or .format)")
        elif (
            isinstance(message, ast.Constant)
            and isinstance(message.value, str)
            and ("%" in message.value or "{" in message.value or "=" in message.value)
        ):
            found.append(f"{where}: fields inside the event text: {message.value!r}")
        if rest:
            found.append(f"{where}: formatting arguments; use extra=fields(...)")
    return found


def test_the_rule_catches_each_way_of_formatting() -> None:
    bad = ast.parse(
        'log.info("started host=%s", host)\n'
        'log.info(f"started {host}")\n'
        'log.info("started {}".format(host))\n'
        'log.info("started %s" % host)\n'
        'log.warning("started host=x")\n'
    )
    assert len(offending_calls(bad, "x.py")) == 6
    good = ast.parse('log.info("started", extra=fields(host=host))\nlog.exception("crashed")\n')
    assert offending_calls(good, "x.py") == []


def test_no_log_call_in_src_formats_its_fields_into_the_event() -> None:
    problems: list[str] = []
    for path in sorted(SOURCE.rglob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        problems.extend(offending_calls(tree, str(path.relative_to(SOURCE))))
    assert problems == [], "\n".join(problems)
