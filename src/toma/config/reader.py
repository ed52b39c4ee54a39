"""Walking parsed TOML: typed reads, ranges and conversions whose errors name file, line and key.

Each section's own rules live in :mod:`toma.config.sections`; what is shared by several
sections (ports, timeouts, secrets, durations in a range) is here.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import Any, TypeVar

from email_validator import EmailNotValidError, validate_email

from toma.config.model import DAYS, LONGEST_TICK, MAX_TIMEOUT, SHORTEST_TICK, Secret
from toma.errors import ConfigError
from toma.timeutil import Duration, DurationRangeError, parse_duration, zone

T = TypeVar("T")


class Reader:
    """Walks the parsed TOML, knowing the text so errors can name a line."""

    def __init__(self, file: Path, text: str) -> None:
        self.file = file
        self.lines = text.splitlines()
        # Every table read and the keys it accepts: the configuration reference
        # (toma.config.reference) is made from these, so it cannot drift.
        self.tables: dict[str, frozenset[str]] = {}

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(message, file=self.file, line=self.locate(key), key=key)

    def locate(self, dotted: str) -> int | None:
        """The line where ``section.key`` is written, found by reading the text."""
        *sections, leaf = dotted.split(".")
        header = ".".join(sections) if sections else None
        in_section = header is None
        fallback = None
        for number, raw in enumerate(self.lines, start=1):
            line = raw.strip()
            if line.startswith("["):
                name = line.strip("[] \t")
                in_section = name == header
                if name == dotted:
                    fallback = fallback or number
                continue
            if in_section and re.match(rf"^{re.escape(leaf)}\s*=", line):
                return number
        if fallback:
            return fallback
        if header:
            for number, raw in enumerate(self.lines, start=1):
                if raw.strip().strip("[] \t") == header:
                    return number
        return None

    def table(self, raw: Mapping[str, Any], name: str, allowed: set[str]) -> Mapping[str, Any]:
        self.tables[name] = frozenset(allowed)
        value = raw.get(name.rpartition(".")[2], {})
        if not isinstance(value, Mapping):
            raise self.error(name, f"[{name}] must be a table")
        for key in value:
            if key not in allowed:
                hint = close(key, allowed)
                raise self.error(
                    f"{name}.{key}",
                    f"unknown key {key!r} in [{name}]"
                    + (f" (did you mean {hint!r}?)" if hint else ""),
                )
        return value

    def get(
        self,
        table: Mapping[str, Any],
        section: str,
        key: str,
        kind: type[T] | tuple[type, ...],
        default: Any = None,
        *,
        required: bool = False,
    ) -> Any:
        if key not in table:
            if required:
                raise self.error(section, f"[{section}] needs {key} = …")
            return default
        value = table[key]
        if isinstance(value, bool) and kind is not bool and kind != (bool,):
            raise self.error(
                f"{section}.{key}", f"{key} must be {_kind_name(kind)}, not true/false"
            )
        if not isinstance(value, kind):
            raise self.error(f"{section}.{key}", f"{key} must be {_kind_name(kind)}, got {value!r}")
        if isinstance(value, str) and "\x00" in value:
            # No setting has a use for one, and PostgreSQL cannot store one: a template
            # named with it would fail the write of a whole send.
            raise self.error(f"{section}.{key}", f"{key} cannot hold a NUL character")
        return value

    def convert(self, section: str, key: str, value: Any, parse: Callable[[Any], T]) -> T:
        try:
            return parse(value)
        except ValueError as exc:
            raise self.error(f"{section}.{key}", str(exc)) from None

    def path(self, value: str | None) -> Path | None:
        if value is None:
            return None
        path = Path(value).expanduser()
        return path if path.is_absolute() else (self.file.parent / path)


def read_since(reader: Reader, table: Mapping[str, Any], owner_zone: str) -> datetime | None:
    """``[inbox] since``: a TOML date or date-time, or an ISO 8601 string; a date or a time
    without an offset is read in the owner's zone."""
    value = reader.get(table, "inbox", "since", (str, date, datetime), None)
    if value is None:
        return None

    def parse(raw: str | date) -> datetime:
        if isinstance(raw, str):
            try:
                raw = datetime.fromisoformat(raw.strip())
            except ValueError:
                raise ValueError(
                    f"since must be an ISO 8601 date or date-time (2026-06-01 or "
                    f"2026-06-01T09:00+02:00), got {raw!r}"
                ) from None
        moment = raw if isinstance(raw, datetime) else datetime.combine(raw, time(0))
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zone(owner_zone))
        return moment.astimezone(UTC)

    return reader.convert("inbox", "since", value, parse)


def _kind_name(kind: Any) -> str:
    names = {
        str: "a string",
        int: "a whole number",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    if isinstance(kind, tuple):
        return " or ".join(names.get(k, k.__name__) for k in kind)
    return str(names.get(kind, kind.__name__))


def close(word: str, candidates: set[str]) -> str | None:
    import difflib

    found = difflib.get_close_matches(word, sorted(candidates), n=1, cutoff=0.6)
    return found[0] if found else None


def parse_clock(text: str) -> time:
    if not re.fullmatch(r"\d{1,2}:\d{2}", text):
        raise ValueError(f'{text!r} is not a time of day (use "HH:MM", such as "09:01")')
    hours, minutes = (int(part) for part in text.split(":"))
    if hours > 23 or minutes > 59:
        raise ValueError(f"{text!r} is not a time of day")
    return time(hours, minutes)


def parse_days(days: list[Any]) -> frozenset[int]:
    result = set()
    for day in days:
        if not isinstance(day, str) or day.lower()[:3] not in DAYS:
            raise ValueError(f"{day!r} is not a day: use mon, tue, wed, thu, fri, sat, sun")
        result.add(DAYS.index(day.lower()[:3]))
    if not result:
        raise ValueError("a window needs at least one day")
    return frozenset(result)


def parse_address(text: str) -> str:
    try:
        return validate_email(text, check_deliverability=False).normalized
    except EmailNotValidError as exc:
        raise ValueError(f"{text!r} is not an email address: {exc}") from None


def read_secret(reader: Reader, table: Mapping[str, Any], section: str) -> Secret:
    if "password" in table:
        raise reader.error(
            f"{section}.password",
            'passwords do not belong in the config: use password_env = "VAR" '
            'or password_file = "path"',
        )
    env = reader.get(table, section, "password_env", str)
    file = reader.get(table, section, "password_file", str)
    if env and file:
        raise reader.error(
            f"{section}.password_file", "give password_env or password_file, not both"
        )
    return Secret(
        env=env,
        file=reader.path(file),
        key=f"{section}.password_env" if env else f"{section}.password_file",
        config_file=str(reader.file),
    )


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f'{text!r} is not HOST:PORT (such as "127.0.0.1:8025")')
    return host.strip("[]") or "127.0.0.1", int(port)


def read_positive(r: Reader, table: Mapping[str, Any], section: str, key: str, default: int) -> int:
    value: int = r.get(table, section, key, int, default)
    if value < 1:
        raise r.error(f"{section}.{key}", f"{key} must be at least 1")
    return value


def read_whole(
    r: Reader, table: Mapping[str, Any], section: str, key: str, default: int, *, most: int
) -> int:
    value: int = r.get(table, section, key, int, default)
    if not 1 <= value <= most:
        raise r.error(f"{section}.{key}", f"{key} must be between 1 and {most}, got {value}")
    return value


def read_port(r: Reader, table: Mapping[str, Any], section: str, default: int) -> int:
    value: int = r.get(table, section, "port", int, default)
    if not 1 <= value <= 65535:
        raise r.error(f"{section}.port", f"port must be between 1 and 65535, got {value}")
    return value


def read_timeout(r: Reader, table: Mapping[str, Any], section: str, default: float) -> float:
    value = float(r.get(table, section, "timeout", (int, float), default))
    if not value > 0:  # also refuses nan
        raise r.error(f"{section}.timeout", f"timeout must be more than 0 seconds, got {value}")
    if value > MAX_TIMEOUT:
        raise r.error(
            f"{section}.timeout", f"timeout must be at most {MAX_TIMEOUT:g} seconds, got {value:g}"
        )
    return value


def read_interval(
    r: Reader, table: Mapping[str, Any], section: str, key: str, default: str
) -> Duration:
    """A duration between :data:`SHORTEST_TICK` and :data:`LONGEST_TICK` (how often to act)."""
    text = r.get(table, section, key, str, default)
    wrong = r.error(
        f"{section}.{key}",
        f"{key} must be between {SHORTEST_TICK} and {LONGEST_TICK}, got {text!r:.40}",
    )
    try:
        value = parse_duration(text)
    except DurationRangeError:
        raise wrong from None
    except ValueError as exc:
        raise r.error(f"{section}.{key}", str(exc)) from None
    if not SHORTEST_TICK.seconds <= value.approx().total_seconds() <= LONGEST_TICK.seconds:
        raise wrong
    return value


def read_ca_file(r: Reader, table: Mapping[str, Any], section: str) -> Path | None:
    """The CA bundle to trust, which must be a readable file now, not at the first connection."""
    path = r.path(r.get(table, section, "ca_file", str))
    if path is None:
        return None
    key = f"{section}.ca_file"
    if not path.exists():
        raise r.error(key, f"no such file: {path}")
    if not path.is_file():
        raise r.error(key, f"not a file: {path}")
    try:
        with path.open("rb") as src:
            src.read(1)
    except OSError as exc:
        raise r.error(key, f"cannot read {path}: {exc.strerror}") from None
    return path
