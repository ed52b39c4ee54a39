"""[store]: the embedded store by default; PostgreSQL with a DSN kept outside config.toml."""

from __future__ import annotations

from pathlib import Path

import pytest

from toma.config import load_config
from toma.errors import ConfigError

BASE = (
    '[owner]\nname = "Alex"\nemail = "alex@example.com"\ntimezone = "Europe/Berlin"\n'
    'postal_address = "Street 1, Town"\n'
)


def config_with(tmp_path: Path, store: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(BASE + store, encoding="utf-8")
    return path


def test_the_embedded_store_is_the_default(tmp_path: Path):
    assert load_config(config_with(tmp_path, "")).store.kind == "embedded"


def test_the_dsn_comes_from_the_environment_or_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setenv("TOMA_T_DSN", "postgresql://u:pw@db/toma")
    config = load_config(
        config_with(tmp_path, '[store]\nkind = "postgres"\ndsn_env = "TOMA_T_DSN"\n')
    )
    assert config.store.dsn.reveal() == "postgresql://u:pw@db/toma"
    (tmp_path / "dsn").write_text("postgresql://u:pw@db/other\n", encoding="utf-8")
    config = load_config(config_with(tmp_path, '[store]\nkind = "postgres"\ndsn_file = "dsn"\n'))
    assert config.store.dsn.reveal() == "postgresql://u:pw@db/other"


@pytest.mark.parametrize(
    ("text", "key", "says"),
    [
        ('kind = "postgres"\ndsn = "postgresql://u:pw@db/x"\n', "store.dsn", "does not belong"),
        ('kind = "postgres"\n', "store.kind", "needs dsn_env"),
        ('kind = "postgres"\ndsn_env = "A"\ndsn_file = "b"\n', "store.dsn_file", "not both"),
        ('kind = "mysql"\n', "store.kind", '"embedded" or "postgres"'),
        ('dsn_env = "A"\n', "store.dsn_env", 'goes with kind = "postgres"'),
        ('kind = "postgres"\ndsn_env = "A"\nhost = "db"\n', "store.host", ""),
    ],
    ids=["dsn-in-config", "no-dsn", "both", "unknown-kind", "dsn-without-postgres", "unknown-key"],
)
def test_a_wrong_store_section_names_its_key(tmp_path: Path, text: str, key: str, says: str):
    with pytest.raises(ConfigError) as caught:
        load_config(config_with(tmp_path, "[store]\n" + text))
    assert caught.value.key == key
    assert says in str(caught.value)
