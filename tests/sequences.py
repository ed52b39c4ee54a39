"""A sequence as its file would give it, for the tests of the planner and its index."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from toma.core.sequences import OnReply, Repeat, Sequence, Step
from toma.timeutil import parse_duration


def sequence(
    name: str,
    steps: Iterable[tuple[str, str]],
    *,
    repeat: str | None = None,
    window: str = "default",
) -> Sequence:
    """``name`` with ``steps`` as (id, delay) and an optional repeat, stopping on a reply."""
    return Sequence(
        name=name,
        description="",
        enroll_tag=None,
        on_reply=OnReply("stop"),
        window=window,
        steps=tuple(Step(i, parse_duration(a), f"{name}/{i}.md") for i, a in steps),
        repeat=Repeat(parse_duration(repeat), f"{name}/repeat.md") if repeat else None,
        file=Path(f"sequences/{name}.toml"),
    )
