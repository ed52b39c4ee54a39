"""config.toml: every mistake is one located error; good files become typed values."""

from __future__ import annotations

from pathlib import Path

import pytest

from toma.config import load_config
from toma.errors import ConfigError

GOOD = """\
[owner]
name = "Alex Example"
email = "Alex@Example.com"
timezone = "Europe/Berlin"

[transport]
kind = "maildir"
path = "var/outbox"

[windows.default]
days = ["mon", "tue", "wed", "thu", "fri"]
start = "09:01"
end = "16:59"

[windows.weekend]
days = ["sat", "sun"]
start = "10:00"
end = "12:00"

[pace]
min_gap = "3d"

[invoices]
terms = "30d"
stages = [{ at = "-3d", template = "invoices/soon.md" },
          { at = "+7d", template = "invoices/late.md" }]
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_good_config_becomes_typed_values(tmp_path: Path) -> None:
    """Paths are taken relative to the config's folder; addresses are normalised."""
    config = load_config(write(tmp_path, GOOD))
    assert config.owner.email == "Alex@example.com"
    assert config.owner.domain == "example.com"
    assert config.transport.path == tmp_path / "var/outbox"
    assert config.paths.data == tmp_path / "var/data"
    assert config.windows["weekend"].days == frozenset({5, 6})
    assert config.windows["default"].start.hour == 9
    assert config.pace.min_gap.seconds == 3 * 86400
    assert [s.at.seconds for s in config.invoices.stages] == [-3 * 86400, 7 * 86400]


def test_default_window_exists_without_being_written(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, '[owner]\nname = "A"\nemail = "a@example.com"\n'))
    window = config.windows["default"]
    assert window.days == frozenset(range(5))
    assert (window.start.isoformat(), window.end.isoformat()) == ("09:01:00", "16:59:00")


@pytest.mark.parametrize(
    ("change", "line", "key", "words"),
    [
        (("min_gap", "min_gapp"), 21, "pace.min_gapp", "did you mean 'min_gap'"),
        (
            ('timezone = "Europe/Berlin"', 'timezone = "Europe/Berlln"'),
            4,
            "owner.timezone",
            "not a time zone",
        ),
        (('start = "09:01"', 'start = "9am"'), 12, "windows.default.start", "not a time of day"),
        (('min_gap = "3d"', "min_gap = 3"), 21, "pace.min_gap", "must be a string"),
        (('kind = "maildir"', 'kind = "carrier-pigeon"'), 7, "transport.kind", "maildir"),
        (
            ('email = "Alex@Example.com"', 'email = "not an address"'),
            3,
            "owner.email",
            "not an email address",
        ),
        (("[pace]", "[paces]"), 20, "paces", "did you mean [pace]"),
        (('min_gap = "3d"', 'min_gap = "3 fortnights"'), 21, "pace.min_gap", "not a duration"),
        (('min_gap = "3d"', 'min_gap = "99999999999999y"'), 21, "pace.min_gap", "10 years"),
        (('terms = "30d"', 'terms = "999999999y"'), 24, "invoices.terms", "10 years"),
    ],
)
def test_mistake_names_file_line_and_key(
    tmp_path: Path, change: tuple[str, str], line: int, key: str, words: str
) -> None:
    """A typo'd key, a wrong type, a bad zone: one error with file, line and key."""
    path = write(tmp_path, GOOD.replace(*change))
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert error.file == str(path.resolve())
    assert error.line == line, str(error)
    assert error.key == key
    assert words in str(error)
    assert str(error).startswith(f"{path.resolve()}:{line}: {key}: ")


def test_missing_owner_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"\[owner\] is missing"):
        load_config(write(tmp_path, '[pace]\nmin_gap = "3d"\n'))


def test_password_in_config_is_refused(tmp_path: Path) -> None:
    text = GOOD + '\n[smtp]\nhost = "smtp.example.com"\npassword = "hunter2"\n'
    with pytest.raises(ConfigError, match="do not belong in the config") as caught:
        load_config(write(tmp_path, text))
    assert caught.value.key == "smtp.password"


def test_secret_comes_from_env_or_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text("from-file\n")
    text = (
        GOOD + '\n[smtp]\nhost = "h"\npassword_env = "TOMA_TEST_PW"\n[imap]\n'
        'host = "h"\npassword_file = "pw"\n'
    )
    config = load_config(write(tmp_path, text))
    monkeypatch.setenv("TOMA_TEST_PW", "from-env")
    assert config.smtp.password.reveal() == "from-env"
    assert config.imap.password.reveal() == "from-file"
    monkeypatch.delenv("TOMA_TEST_PW")
    with pytest.raises(ConfigError, match="TOMA_TEST_PW is not set"):
        config.smtp.password.reveal()


def test_invalid_toml_names_the_line(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load_config(write(tmp_path, GOOD + "\nthis is not toml\n"))
    assert caught.value.line == 28


def test_missing_file_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="toma init"):
        load_config(tmp_path / "nope.toml")


def test_example_config_loads() -> None:
    example = Path(__file__).parents[2] / "config.example.toml"
    config = load_config(example)
    assert config.transport.kind == "maildir"
    assert config.inbox.kind == "maildir"


RANGES = [
    # (section text, key, line within the section, words)
    ('[daemon]\ntick_every = "999999999y"\n', "daemon.tick_every", 2, "between 1s and 1d"),
    ('[daemon]\ntick_every = "2d"\n', "daemon.tick_every", 2, "between 1s and 1d"),
    ('[daemon]\ntick_every = "0s"\n', "daemon.tick_every", 2, "between 1s and 1d"),
    ('[pace]\nmax_late = "99999999999999y"\n', "pace.max_late", 2, "10 years"),
    ("[smtp]\nport = 0\n", "smtp.port", 2, "between 1 and 65535"),
    ("[smtp]\nport = 70000\n", "smtp.port", 2, "between 1 and 65535"),
    ("[imap]\nport = -1\n", "imap.port", 2, "between 1 and 65535"),
    ("[smtp]\ntimeout = 0\n", "smtp.timeout", 2, "more than 0"),
    ("[smtp]\ntimeout = -3.5\n", "smtp.timeout", 2, "more than 0"),
    ("[smtp]\ntimeout = 1e9\n", "smtp.timeout", 2, "at most"),
    ("[smtp]\ntimeout = nan\n", "smtp.timeout", 2, "more than 0"),
    ("[smtp]\nconcurrency = 0\n", "smtp.concurrency", 2, "between 1 and"),
    ("[smtp]\nconcurrency = 100000\n", "smtp.concurrency", 2, "between 1 and"),
    ("[smtp]\nrate_per_minute = 0\n", "smtp.rate_per_minute", 2, "between 1 and"),
    ('[smtp]\nretry_for = "99999999999999y"\n', "smtp.retry_for", 2, "10 years"),
    ('[smtp]\nca_file = "missing.pem"\n', "smtp.ca_file", 2, "no such file"),
    ('[imap]\nca_file = "."\n', "imap.ca_file", 2, "not a file"),
    ('[imap]\npoll_every = "0s"\n', "imap.poll_every", 2, "between 1s and 1d"),
    ("[inbox]\nsoft_bounce_limit = 0\n", "inbox.soft_bounce_limit", 2, "at least 1"),
    (
        '[invoices]\nstages = [{ at = "99999999999999y", template = "x.md" }]\n',
        "invoices.stages",
        2,
        "10 years",
    ),
]


@pytest.mark.parametrize(
    ("section", "key", "offset", "words"), RANGES, ids=[f"{c[1]}:{c[0][-24:]}" for c in RANGES]
)
def test_numbers_and_durations_out_of_range_name_file_line_and_key(
    tmp_path: Path, section: str, key: str, offset: int, words: str
) -> None:
    """A value no daemon can run with is refused at load (and so by `toma check`)."""
    base = '[owner]\nname = "A"\nemail = "a@example.com"\n\n'
    path = write(tmp_path, base + section)
    line = base.count("\n") + offset
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    error = caught.value
    assert (error.key, error.line) == (key, line), str(error)
    assert words in str(error)
    assert str(error).startswith(f"{path.resolve()}:{line}: {key}: ")


def test_numbers_at_the_edges_of_their_ranges_load(tmp_path: Path) -> None:
    (tmp_path / "ca.pem").write_text("-----BEGIN CERTIFICATE-----\n", encoding="utf-8")
    text = (
        '[owner]\nname = "A"\nemail = "a@example.com"\n'
        "[smtp]\nport = 65535\ntimeout = 0.5\nconcurrency = 1\nrate_per_minute = 1\n"
        'ca_file = "ca.pem"\n'
        "[imap]\nport = 1\n"
        '[daemon]\ntick_every = "1d"\n'
        '[pace]\nmax_late = "10y"\n'
    )
    config = load_config(write(tmp_path, text))
    assert (config.smtp.port, config.imap.port, config.smtp.concurrency) == (65535, 1, 1)
    assert config.smtp.rate_per_minute == 1
    assert config.smtp.ca_file == tmp_path / "ca.pem"
    assert config.daemon.tick_every.seconds == 86400


def test_a_config_nested_thousands_deep_is_one_clear_error(tmp_path: Path) -> None:
    """tomllib recurses per level: 5,000 levels were a RecursionError out of `toma check`."""
    path = write(tmp_path, "x = " + "[" * 5000 + "]" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply") as caught:
        load_config(path)
    assert caught.value.file == str(path)
    path = write(tmp_path, "x = " + "{a = " * 5000 + "1" + "}" * 5000 + "\n")
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(path)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"2026-06-01"', "2026-05-31T22:00:00+00:00"),  # a date: midnight in the owner's zone
        ("2026-06-01", "2026-05-31T22:00:00+00:00"),  # a TOML date
        ('"2026-06-01T09:00:00+02:00"', "2026-06-01T07:00:00+00:00"),
        ("2026-06-01T09:00:00Z", "2026-06-01T09:00:00+00:00"),  # a TOML date-time
    ],
)
def test_inbox_since_is_a_moment(tmp_path: Path, value: str, expected: str) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD + f"\n[inbox]\nsince = {value}\n")
    since = load_config(path).inbox.since
    assert since is not None and since.isoformat() == expected


def test_inbox_since_unset_is_the_first_sync(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    path.write_text(GOOD)
    assert load_config(path).inbox.since is None
    path.write_text(GOOD + '\n[inbox]\nsince = "June"\n')
    with pytest.raises(ConfigError, match=r"inbox\.since"):
        load_config(path)


@pytest.mark.parametrize(
    ("section", "key"),
    [
        ('[owner]\nname = "A\\u0000"\nemail = "a@example.com"\n', "owner.name"),
        (
            '[owner]\nname = "A"\nemail = "a@example.com"\n'
            '[invoices]\nstages = [{ at = "-3d", template = "x\\u0000.md" }]\n',
            "invoices.stages[0].template",
        ),
        (
            '[owner]\nname = "A"\nemail = "a@example.com"\n[invoices]\nthank_you = "t\\u0000.md"\n',
            "invoices.thank_you",
        ),
    ],
    ids=["owner.name", "stage template", "thank_you"],
)
def test_a_nul_in_a_setting_is_refused_at_load(tmp_path: Path, section: str, key: str) -> None:
    """No setting has a use for a NUL, and one that reached a message's record (a
    template's name) would fail every write of a send on PostgreSQL."""
    path = write(tmp_path, section)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key, str(caught.value)
    assert "NUL" in str(caught.value)
    assert str(caught.value).startswith(f"{path.resolve()}:")


@pytest.mark.parametrize(
    ("value", "words"),
    [("-1", r"0 \(no limit\) or more"), ("true", "not true/false"), ('"many"', "must be")],
)
def test_dashboard_max_documents_is_a_count(tmp_path: Path, value: str, words: str) -> None:
    path = write(tmp_path, f"{GOOD}\n[dashboard]\nmax_documents = {value}\n")
    with pytest.raises(ConfigError, match=words) as caught:
        load_config(path)
    assert caught.value.key == "dashboard.max_documents"
    limit = load_config(write(tmp_path, f"{GOOD}\n[dashboard]\nmax_documents = 0\n"))
    assert limit.dashboard.max_documents == 0
    assert load_config(write(tmp_path, GOOD)).dashboard.max_documents == 200_000
