"""The Markdown shortcut gives exactly the HTML the ordinary path gives."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toma.mail._skeletons import is_plain
from toma.mail.render import Templates

BODY = """Hi {{ contact.first_name }},

**{{ contact.company }}** and *{{ contact.city }}*: {{ contact.first_name }}'s note.

1. {{ contact.first_name }}
2. at {{ contact.city }}

{{ contact.company }}. A line that starts with a value.
- {{ contact.company }}

| who | where |
|-----|-------|
| {{ contact.first_name }} | {{ contact.city }} |

[{{ contact.company }}](https://example.com/) and `{{ contact.city }}` in code.
{% if contact.vip %}A word for *very* important people.{% endif %}
"""


def templates(tmp_path: Path, body: str = BODY) -> Templates:
    (tmp_path / "layouts").mkdir(exist_ok=True)
    (tmp_path / "layouts" / "default.html").write_text("{{ body }}")
    (tmp_path / "t.md").write_text(f"---\nsubject: Hi\n---\n{body}")
    return Templates(tmp_path)


def both(found: Templates, contact: dict[str, object]) -> tuple[str, str]:
    """(the HTML as rendered, the HTML by the ordinary path)."""
    fast = found.render("t.md", {"contact": contact}).html
    compiled = found._get("t.md", contact=None)
    ordinary = found._md.render(found._run(compiled.markdown, {"contact": contact}, None))
    return fast, ordinary


values = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=30
)


@settings(max_examples=150, deadline=None)
@given(first=values, company=values, city=values, vip=st.booleans())
def test_same_html_either_way(
    tmp_path_factory: pytest.TempPathFactory, first: str, company: str, city: str, vip: bool
) -> None:
    found = templates(tmp_path_factory.mktemp("t"))
    for contact in (
        {"first_name": "Mira", "company": "Keller and Partner", "city": "Hamburg", "vip": vip},
        {"first_name": first, "company": company, "city": city, "vip": vip},
    ):
        fast, ordinary = both(found, contact)
        assert fast == ordinary


def test_the_shortcut_is_taken_for_plain_values(tmp_path: Path) -> None:
    found = templates(tmp_path, "Hi {{ contact.first_name }}, see you in {{ contact.city }}.\n")
    for name in ("Mira", "Jonas", "Sofia"):
        found.render("t.md", {"contact": {"first_name": name, "city": "Lyon"}})
    shapes = found._shapes._cache["t.md"]
    assert len(shapes) == 1
    assert next(iter(shapes.values())) is not None


@pytest.mark.parametrize(
    ("text", "plain"),
    [
        ("Mira", True),
        ("Keller & Partner", True),
        ("O'Brien", False),
        ("", False),
        ("7", False),
        ("-x", False),
        ("x\ny", False),
        ("Zoë Ångström", True),
        ("a  b", False),
    ],
)
def test_plain_values(text: str, plain: bool) -> None:
    assert is_plain(text) is plain
