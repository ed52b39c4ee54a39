"""Reading config.toml: TOML in, a checked :class:`~toma.config.model.Config` out."""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from toma.config import sections
from toma.config.model import Config
from toma.config.reader import Reader, close
from toma.config.senders import read_senders
from toma.errors import ConfigError

TOP_LEVEL = {
    "store",
    "unsubscribe",
    "dashboard",
    "owner",
    "transport",
    "smtp",
    "inbox",
    "imap",
    "windows",
    "pace",
    "invoices",
    "paths",
    "daemon",
    "oauth2",
    "senders",
}


def load_config(path: str | Path) -> Config:
    """Read and validate ``path``; raise :class:`ConfigError` naming the first problem."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            "no such config file (create one with `toma init`, or pass --config)", file=file
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read: {exc}", file=file) from None
    raw = parse_toml(text, file=file)
    return parse_config(raw, file=file.resolve(), text=text)


def parse_toml(text: str, *, file: Path) -> dict[str, Any]:
    """``text`` as TOML; :class:`ConfigError` naming ``file`` (and the line) if it is not."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = re.search(r"line (\d+)", str(exc))
        raise ConfigError(
            f"not valid TOML: {exc}", file=file, line=int(line.group(1)) if line else None
        ) from None
    except RecursionError:
        # tomllib descends once per level of nested arrays and tables.
        raise ConfigError(
            "not usable TOML: arrays or tables are nested too deeply", file=file
        ) from None


def parse_config(raw: Mapping[str, Any], *, file: Path, text: str = "") -> Config:
    r = Reader(file, text)
    for key in raw:
        if key not in TOP_LEVEL:
            hint = close(key, TOP_LEVEL)
            raise r.error(
                key, f"unknown section [{key}]" + (f" (did you mean [{hint}]?)" if hint else "")
            )
    owner = sections.owner(r, raw)
    transport = sections.transport(r, raw)
    if transport.kind == "smtp" and "smtp" not in raw:
        raise r.error("transport.kind", 'kind = "smtp" needs an [smtp] section (host, port, …)')
    inbox = sections.inbox(r, raw, owner.timezone)
    if inbox.kind == "imap" and "imap" not in raw:
        raise r.error("inbox.kind", 'kind = "imap" needs an [imap] section (host, username, …)')
    senders = read_senders(r, raw, owner, transport=transport.kind, inbox=inbox.kind)
    return Config(
        file=file,
        owner=owner,
        transport=transport,
        smtp=sections.smtp(r, raw),
        inbox=inbox,
        imap=sections.imap(r, raw),
        windows=sections.windows(r, raw),
        pace=sections.pace(r, raw),
        invoices=sections.invoices(r, raw),
        paths=sections.paths(r, raw),
        daemon=sections.daemon(r, raw),
        unsubscribe=sections.unsubscribe(r, raw),
        dashboard=sections.dashboard(r, raw),
        store=sections.store(r, raw),
        senders=senders,
    )


def find_config(option: str | None) -> Path:
    """--config, else $TOMA_CONFIG, else ./config.toml."""
    return Path(option or os.environ.get("TOMA_CONFIG") or "config.toml")
