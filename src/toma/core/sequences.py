"""Sequence files (``sequences/*.toml``): what one says, parsed strictly.

One file is one sequence: who is enrolled (by tag or by hand), what a reply
does, the window it sends in, its steps and an optional repeat cadence::

    name = "new-acquaintance"
    enroll_tag = "met"
    on_reply = "pause 30d"        # "stop" | "continue" | "pause" [duration]
    on_handwritten = "continue"   # the owner wrote by hand; the same choices, default on_reply
    window = "default"
    unsubscribe = "none"          # "none" (a personal note) | "headers" | "footer"

    [[steps]]
    id = "nice-to-meet"           # what was sent is remembered by this id
    after = "1d"
    template = "acquaintance/nice-to-meet.md"

    [repeat]
    every = "90d"
    template = "keep-in-touch/hello.md"

Parsing is strict: an unknown key is an error with a "did you mean" hint, since
a misspelt ``afer`` silently ignored is a step sent at the wrong time. Every
error names the file, the line it is on and the key (``steps[1].after``).
:func:`toma.project.sequences.load_sequences` reports a broken file and leaves it
out; the others load.
A broken file's sequence is *held* by the planner (nothing is sent from it)
until it is fixed: :func:`held_sequences` gives the names to hold.

Step ids and sequence names are slugs: they are part of the outbox keys that
make every send happen at most once, so they must be stable and plain. Ids of
the form ``repeat-N`` are reserved for the repeat cadence.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from toma.config import close
from toma.core.contacts import clean_tag
from toma.core.messages import WAYS_OUT, WayOut
from toma.errors import ContactError, SequenceError, TomaError
from toma.timeutil import Duration, parse_duration

if TYPE_CHECKING:
    from pathlib import Path  # names the files a value came from; never opened here

ReplyAction = Literal["stop", "continue", "pause"]

# \Z, not $: $ also matches before a last line end, which would then be part of a key.
SLUG = re.compile(r"^[a-z0-9][a-z0-9_-]*\Z")
REPEAT_STEP = re.compile(r"^repeat-(\d+)\Z")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_PROSE_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # line ends and tabs allowed

TOP_KEYS = frozenset(
    {
        "name",
        "description",
        "enroll_tag",
        "on_reply",
        "on_handwritten",
        "window",
        "unsubscribe",
        "steps",
        "repeat",
    }
)
STEP_KEYS = frozenset({"id", "after", "template"})
REPEAT_KEYS = frozenset({"every", "template"})


@dataclass(frozen=True, slots=True)
class Step:
    id: str
    after: Duration
    template: str


@dataclass(frozen=True, slots=True)
class Repeat:
    every: Duration
    template: str


@dataclass(frozen=True, slots=True)
class OnReply:
    """What a human reply does to the enrolment.

    ``pause`` with a duration resumes by itself; without one it waits for the
    owner (``toma contacts resume`` or re-enrolment).
    """

    action: ReplyAction = "stop"
    pause: Duration | None = None

    def __str__(self) -> str:
        if self.action == "pause" and self.pause is not None:
            return f"pause {self.pause}"
        return self.action


@dataclass(frozen=True, slots=True)
class Sequence:
    name: str
    description: str
    enroll_tag: str | None
    on_reply: OnReply
    window: str
    steps: tuple[Step, ...]
    repeat: Repeat | None
    file: Path
    # A sequence's mail is a personal note: no list headers, no footer, unless it
    # opts in (see toma.core.messages.WayOut). A reply asking to stop is honoured anyway.
    unsubscribe: WayOut = "none"
    # What a message the owner wrote by hand (found in their Sent folder) does to the
    # enrolment; None: the same as a reply.
    on_handwritten: OnReply | None = None

    @property
    def handwritten_rule(self) -> OnReply:
        """``on_handwritten``, or ``on_reply`` when the file does not say."""
        return self.on_handwritten if self.on_handwritten is not None else self.on_reply

    def step(self, step_id: str) -> Step | None:
        for step in self.steps:
            if step.id == step_id:
                return step
        return None


class SequenceProblem(SequenceError):
    """A :class:`SequenceError` that also says which sequence it makes unusable.

    ``sequence`` is the name the file gives (or, when that cannot be read, the
    file's stem): the planner holds that sequence while the file is broken.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        line: int | None = None,
        key: str | None = None,
        sequence: str | None = None,
    ) -> None:
        super().__init__(message, file=file, line=line, key=key)
        self.sequence = sequence


def held_sequences(errors: Iterable[TomaError]) -> frozenset[str]:
    """Names of the sequences that ``errors`` (from :func:`load_sequences`) make unusable."""
    return frozenset(
        error.sequence for error in errors if isinstance(error, SequenceProblem) and error.sequence
    )


# --------------------------------------------------------------------------- parsing


def parse_sequence(path: Path, text: str, *, windows: Collection[str]) -> Sequence:
    """The sequence that ``text`` (the contents of ``path``) describes.

    ``windows`` are the window names config.toml defines. Raises
    :class:`SequenceError` (a :class:`SequenceProblem`) naming file, line and key.
    """
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        found = re.search(r"line (\d+)", str(exc))
        raise SequenceProblem(
            f"not valid TOML: {exc}",
            file=path,
            line=int(found.group(1)) if found else None,
            sequence=_guess_name(text, path),
        ) from None
    except RecursionError:
        # tomllib descends once per level of nested arrays and tables.
        raise SequenceProblem(
            "not usable TOML: arrays or tables are nested too deeply",
            file=path,
            sequence=_guess_name(text, path),
        ) from None
    return _Parser(path, text, raw).sequence(windows)


class _Locator:
    """Finds the line of a key such as ``steps[1].after`` by reading the text."""

    _KEY = re.compile(r"^(\w+)(?:\[(\d+)\])?(?:\.(\w+))?$")

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()

    def line(self, key: str) -> int | None:
        match = self._KEY.match(key)
        if not match:
            return None
        table, index, leaf = match.group(1), match.group(2), match.group(3)
        if index is None and leaf is None:
            # A top-level key, or the header of a table of that name.
            return self._in_block(None, 0, table) or self._header(table, 0)
        block = int(index) if index is not None else 0
        if leaf is None:
            return self._header(table, block) or self._in_block(None, 0, table)
        return (
            self._in_block(table, block, leaf)
            or self._header(table, block)
            or self._in_block(None, 0, table)
        )

    def _headers(self) -> Iterable[tuple[int, str]]:
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                yield number, line.split("#", 1)[0].strip().strip("[]").strip()

    def _header(self, table: str, block: int) -> int | None:
        seen = 0
        for number, name in self._headers():
            if name == table:
                if seen == block:
                    return number
                seen += 1
        return None

    def _in_block(self, table: str | None, block: int, leaf: str) -> int | None:
        """The line of ``leaf = …`` inside the ``block``-th ``[table]`` (None: top level)."""
        current: str | None = None
        seen = -1 if table is not None else 0
        pattern = re.compile(rf"^[\"']?{re.escape(leaf)}[\"']?\s*=")
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                current = line.split("#", 1)[0].strip().strip("[]").strip()
                if current == table:
                    seen += 1
                continue
            if current == table and seen == block and pattern.match(line):
                return number
        return None


class _Parser:
    def __init__(self, path: Path, text: str, raw: Mapping[str, Any]) -> None:
        self.path = path
        self.raw = raw
        self.locator = _Locator(text)
        name = raw.get("name")
        self.name = name if isinstance(name, str) and name else path.stem

    def error(self, key: str, message: str) -> SequenceProblem:
        return SequenceProblem(
            message,
            file=self.path,
            line=self.locator.line(key),
            key=key,
            sequence=self.name,
        )

    def check_keys(self, table: Mapping[str, Any], allowed: frozenset[str], where: str) -> None:
        for key in table:
            if key not in allowed:
                hint = close(key, set(allowed))
                place = f"{where}.{key}" if where else key
                inside = f" in {where}" if where else ""
                raise self.error(
                    place,
                    f"unknown key {key!r}{inside}"
                    + (f" (did you mean {hint!r}?)" if hint else "")
                    + f"; known keys: {', '.join(sorted(allowed))}",
                )

    def string(
        self,
        table: Mapping[str, Any],
        key: str,
        place: str,
        *,
        required: bool = True,
        lines: bool = False,
    ) -> str | None:
        if key not in table:
            if required:
                raise self.error(place, f"{place} is required")
            return None
        value = table[key]
        if not isinstance(value, str):
            raise self.error(place, f"{place} must be a string, got {value!r}")
        if (_PROSE_CONTROL if lines else _CONTROL).search(value):
            # A name, a file, a short phrase on one line (or, with ``lines``, prose): what
            # a control character would do in the records written from it, nobody knows.
            raise self.error(place, f"{place} cannot hold a control character, got {value!r}")
        return value

    def duration(self, table: Mapping[str, Any], key: str, place: str) -> Duration:
        text = self.string(table, key, place)
        assert text is not None  # noqa: S101 - required above
        try:
            found = parse_duration(text)
        except ValueError as exc:
            raise self.error(place, str(exc)) from None
        return found

    def sequence(self, windows: Collection[str]) -> Sequence:
        raw = self.raw
        self.check_keys(raw, TOP_KEYS, "")

        name = self.string(raw, "name", "name")
        assert name is not None  # noqa: S101 - required
        if not SLUG.match(name):
            raise self.error(
                "name",
                f"name {name!r} must be a slug: lower-case letters, digits, '-' and '_' "
                "(it is part of what records each send)",
            )
        description = (
            self.string(raw, "description", "description", required=False, lines=True) or ""
        )

        enroll_tag = self.string(raw, "enroll_tag", "enroll_tag", required=False)
        if enroll_tag is not None:
            try:
                enroll_tag = clean_tag(enroll_tag)
            except ContactError as exc:
                raise self.error("enroll_tag", exc.message) from None

        on_reply = self.on_reply()
        on_handwritten = self.on_reply("on_handwritten") if "on_handwritten" in raw else None

        window = self.string(raw, "window", "window", required=False) or "default"
        if window not in windows:
            hint = close(window, set(windows))
            known = ", ".join(sorted(windows)) or "none"
            raise self.error(
                "window",
                f"no window {window!r} in config.toml"
                + (f" (did you mean {hint!r}?)" if hint else "")
                + f"; windows: {known}",
            )

        unsubscribe = self.way_out()
        steps = self.steps()
        repeat = self.repeat()
        if not steps and repeat is None:
            raise self.error("steps", "a sequence needs at least one [[steps]] or a [repeat]")

        return Sequence(
            name=name,
            description=description,
            enroll_tag=enroll_tag,
            on_reply=on_reply,
            window=window,
            steps=steps,
            repeat=repeat,
            file=self.path,
            unsubscribe=unsubscribe,
            on_handwritten=on_handwritten,
        )

    def way_out(self) -> WayOut:
        text = self.string(self.raw, "unsubscribe", "unsubscribe", required=False)
        if text is None:
            return "none"
        for way in WAYS_OUT:
            if text == way:
                return way
        hint = close(text, set(WAYS_OUT))
        raise self.error(
            "unsubscribe",
            f"unsubscribe must be {', '.join(repr(w) for w in WAYS_OUT)}, got {text!r}"
            + (f" (did you mean {hint!r}?)" if hint else "")
            + ': "none" sends a personal note, "headers" adds List-Unsubscribe, '
            '"footer" adds those and a footer with your postal address and the link',
        )

    def on_reply(self, key: str = "on_reply") -> OnReply:
        """``on_reply`` (or ``on_handwritten``, read the same way)."""
        text = self.string(self.raw, key, key, required=False)
        if text is None:
            return OnReply("stop")
        words = text.split(None, 1)
        action = words[0].lower() if words else ""
        if action in ("stop", "continue") and len(words) == 1:
            return OnReply("stop" if action == "stop" else "continue")
        if action == "pause":
            if len(words) == 1:
                return OnReply("pause", None)
            try:
                length = parse_duration(words[1])
            except ValueError as exc:
                raise self.error(key, str(exc)) from None
            if not (length.months or length.seconds):
                raise self.error(key, "a pause must last longer than nothing")
            return OnReply("pause", length)
        raise self.error(key, f'{key} must be "stop", "continue" or "pause 30d", got {text!r}')

    def steps(self) -> tuple[Step, ...]:
        raw_steps = self.raw.get("steps", [])
        if not isinstance(raw_steps, list):
            raise self.error("steps", "steps must be written as [[steps]] tables")
        steps: list[Step] = []
        seen: dict[str, int] = {}
        for index, table in enumerate(raw_steps):
            place = f"steps[{index}]"
            if not isinstance(table, Mapping):
                raise self.error(place, f"{place} must be a table with id, after and template")
            self.check_keys(table, STEP_KEYS, place)
            step_id = self.string(table, "id", f"{place}.id")
            assert step_id is not None  # noqa: S101 - required
            if not SLUG.match(step_id):
                raise self.error(
                    f"{place}.id",
                    f"step id {step_id!r} must be a slug: lower-case letters, digits, '-', '_'",
                )
            if REPEAT_STEP.match(step_id):
                raise self.error(
                    f"{place}.id", f"step id {step_id!r} is reserved for the [repeat] messages"
                )
            if step_id in seen:
                raise self.error(
                    f"{place}.id",
                    f"step id {step_id!r} is already used by steps[{seen[step_id]}]: "
                    "ids must be unique (they record what was sent)",
                )
            seen[step_id] = index
            after = self.duration(table, "after", f"{place}.after")
            template = self.string(table, "template", f"{place}.template")
            assert template is not None  # noqa: S101 - required
            if not template.strip():
                raise self.error(f"{place}.template", "template must name a file")
            steps.append(Step(id=step_id, after=after, template=template.strip()))
        return tuple(steps)

    def repeat(self) -> Repeat | None:
        if "repeat" not in self.raw:
            return None
        table = self.raw["repeat"]
        if not isinstance(table, Mapping):
            raise self.error("repeat", "repeat must be a [repeat] table with every and template")
        self.check_keys(table, REPEAT_KEYS, "repeat")
        every = self.duration(table, "every", "repeat.every")
        if not (every.months or every.seconds):
            raise self.error("repeat.every", "repeat.every must be longer than nothing")
        template = self.string(table, "template", "repeat.template")
        assert template is not None  # noqa: S101 - required
        if not template.strip():
            raise self.error("repeat.template", "template must name a file")
        return Repeat(every=every, template=template.strip())


def _guess_name(text: str, path: Path) -> str:
    found = re.search(r"^\s*name\s*=\s*[\"']([^\"']+)[\"']", text, re.MULTILINE)
    return found.group(1) if found else path.stem
