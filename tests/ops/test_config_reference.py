"""The configuration reference cannot drift from the parser: both directions are checked."""

from __future__ import annotations

from toma.config.load import TOP_LEVEL
from toma.config.reference import EXAMPLE, WINDOW, accepted_keys, markdown, reference


def test_every_accepted_key_is_described_and_every_described_key_accepted() -> None:
    found = reference()
    assert found.undescribed == [], "describe these in config.example.toml"
    assert found.unknown == [], "config.example.toml describes keys the parser refuses"


def test_every_section_the_parser_knows_is_in_the_reference() -> None:
    accepted = accepted_keys()
    assert {name if name != "windows" else WINDOW for name in TOP_LEVEL} == set(accepted)
    assert set(reference().sections) == set(accepted)


def test_a_key_without_its_description_is_named() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        'tick_every = "1min"', '# (no words)\n\ntick_every = "1min"'
    )
    assert reference(text).undescribed == ["daemon.tick_every"]


def test_a_key_the_parser_refuses_is_named() -> None:
    text = EXAMPLE.read_text(encoding="utf-8").replace(
        "[daemon]\n", "[daemon]\nspeed = 3   # how fast, made up\n"
    )
    assert reference(text).unknown == ["daemon.speed"]


def test_a_commented_out_key_and_an_alternative_in_a_comment_count() -> None:
    smtp = {item.key: item for item in reference().sections["smtp"]}
    assert smtp["host"].commented
    assert "password" in smtp["password_file"].description
    assert smtp["password"].description.startswith("refused")


def test_the_markdown_has_a_table_per_section_and_every_key() -> None:
    text = markdown(reference())
    for section, keys in accepted_keys().items():
        assert f"### `[{section}]`" in text
        for key in keys:
            assert f"| `{key}` |" in text, (section, key)
