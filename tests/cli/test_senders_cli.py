"""`toma contacts assign` and `toma check` with several senders."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from .conftest import Invoke

ANN = '\n[[senders]]\nname = "Ann Able"\nemail = "ann@example.com"\nsignature = "Ann"\n'


def owners(toma: Invoke) -> dict[str, str]:
    listed = json.loads(toma("contacts", "list", "--json").output)
    return {c["email"]: c.get("owner", "") for c in listed}


def test_assign_gives_contacts_to_a_sender_all_or_none(project: Path, toma: Invoke) -> None:
    config = project / "config.toml"
    config.write_text(config.read_text() + ANN)
    for address in ("a@example.org", "b@example.org"):
        assert toma("contacts", "add", address).exit_code == 0
    before = owners(toma)

    result = toma("contacts", "assign", "a@example.org", "nobody@example.org", "--to", "Ann Able")
    assert result.exit_code != 0 and "nobody@example.org" in result.output
    assert owners(toma) == before  # one unknown contact: none changed

    result = toma("contacts", "assign", "carol@example.com", "--to", "carol")
    assert result.exit_code != 0 and "the senders are" in result.output

    result = toma("contacts", "assign", "a@example.org", "B@example.org", "--to", "ann@EXAMPLE.com")
    assert result.exit_code == 0, result.output
    assert owners(toma)["a@example.org"] == owners(toma)["b@example.org"] == "ann@example.com"
    assert "ann@example.com" in toma("contacts", "show", "a@example.org").output
    assert toma("check").exit_code == 0

    # Ann leaves config.toml: her contacts' mail is held, and check names them.
    config.write_text(config.read_text().replace(ANN, ""))
    result = toma("check")
    assert result.exit_code != 0
    assert "a@example.org" in result.output and "ann@example.com" in result.output

    # Given back to the default sender by [owner]'s address: check passes again.
    default = tomllib.loads(config.read_text())["owner"]["email"]
    result = toma("contacts", "assign", "a@example.org", "b@example.org", "--to", default)
    assert result.exit_code == 0, result.output
    assert set(owners(toma).values()) == {""}
    assert toma("check").exit_code == 0


def test_preview_is_made_as_the_contacts_sender_sends_it(project: Path, toma: Invoke) -> None:
    config = project / "config.toml"
    config.write_text(config.read_text() + ANN)
    toma("contacts", "add", "c@example.org", "--first-name", "Cleo")
    template = next(p for p in (project / "templates").rglob("*.md") if "layouts" not in p.parts)
    name = str(template.relative_to(project / "templates"))
    before = toma("preview", name, "--contact", "c@example.org")
    assert before.exit_code == 0, before.output
    assert "From: Ann Able" not in before.output
    toma("contacts", "assign", "c@example.org", "--to", "Ann Able")
    after = toma("preview", name, "--contact", "c@example.org")
    assert "From: Ann Able <ann@example.com>" in after.output, after.output
