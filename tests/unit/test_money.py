"""Money: exact amounts in ISO 4217 currencies, written as a reader of a language writes them."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

import pytest

from toma.core import money
from toma.core.money import (
    CURRENCIES,
    clean_currency,
    format_day,
    format_money,
    is_locale,
    minor_digits,
    parse_amount,
)

NBSP = "\u00a0"


@pytest.fixture(params=["babel", "fallback"])
def formatter(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with Babel and with the fallback used when it is not installed."""
    if request.param == "fallback":
        monkeypatch.setattr(money, "HAVE_BABEL", False)
    else:
        assert money.HAVE_BABEL, "Babel should be installed in the test environment"
    return str(request.param)


class TestFormatMoney:
    @pytest.mark.parametrize(
        ("amount", "currency", "locale", "expected"),
        [
            ("1234.5", "EUR", "en", "€1,234.50"),
            ("1234.5", "EUR", "de", f"1.234,50{NBSP}€"),
            ("1000", "JPY", "en", "¥1,000"),
            ("1000", "JPY", "de", f"1.000{NBSP}¥"),
            ("0.5", "EUR", "en", "€0.50"),
            ("1234567.89", "USD", "en", "$1,234,567.89"),
            ("1234.5", "eur", "de_DE", f"1.234,50{NBSP}€"),
            ("1234.5", "EUR", "de-AT", f"€{NBSP}1.234,50"),
        ],
    )
    def test_babel_formats_as_the_reader_writes(
        self, amount: str, currency: str, locale: str, expected: str
    ) -> None:
        """With Babel, CLDR decides signs and separators; ISO decides the decimals."""
        assert format_money(Decimal(amount), currency, locale) == expected

    @pytest.mark.parametrize(
        ("amount", "currency", "locale", "expected"),
        [
            ("1234.5", "EUR", "en", "€1,234.50"),
            ("1234.5", "EUR", "de", f"1.234,50{NBSP}€"),
            ("1000", "JPY", "en", "¥1,000"),
            ("1000", "JPY", "de", f"1.000{NBSP}¥"),
            ("12.345", "KWD", "en", f"KWD{NBSP}12.345"),
            ("1234.5", "CHF", "sv", f"1234.50{NBSP}CHF"),
        ],
    )
    def test_fallback_keeps_the_minor_units(
        self,
        monkeypatch: pytest.MonkeyPatch,
        amount: str,
        currency: str,
        locale: str,
        expected: str,
    ) -> None:
        """Without Babel the decimals are still ISO's, and an unknown language gets the code."""
        monkeypatch.setattr(money, "HAVE_BABEL", False)
        assert format_money(Decimal(amount), currency, locale) == expected

    def test_iso_decimals_win_over_cldr_rounding(self, formatter: str) -> None:
        """CLDR shows RSD without decimals; an invoice of 100.50 RSD must not read 100 RSD."""
        assert "100.50" in format_money(Decimal("100.50"), "RSD", "en")
        assert "12.345" in format_money(Decimal("12.345"), "KWD", "en")

    def test_unknown_locale_is_an_error(self, formatter: str) -> None:
        with pytest.raises(ValueError, match="not a known locale"):
            format_money(Decimal(1), "EUR", "12")
        assert not is_locale("12")
        assert is_locale("de")

    def test_unknown_currency_is_an_error(self) -> None:
        with pytest.raises(ValueError, match="ISO 4217"):
            format_money(Decimal(1), "ABC")


class TestFormatDay:
    @pytest.mark.parametrize(
        ("locale", "expected"), [("en", "March 2, 2026"), ("de", "2. März 2026")]
    )
    def test_with_babel(self, locale: str, expected: str) -> None:
        assert format_day(date(2026, 3, 2), locale) == expected

    @pytest.mark.parametrize(
        ("locale", "expected"), [("en", "March 2, 2026"), ("de", "2026-03-02")]
    )
    def test_fallback(self, monkeypatch: pytest.MonkeyPatch, locale: str, expected: str) -> None:
        """Without Babel: English in English, ISO 8601 (read the same everywhere) otherwise."""
        monkeypatch.setattr(money, "HAVE_BABEL", False)
        assert format_day(date(2026, 3, 2), locale) == expected


class TestParseAmount:
    @pytest.mark.parametrize(
        ("text", "currency", "expected"),
        [
            ("1234.50", "EUR", "1234.50"),
            ("1234.5", "EUR", "1234.50"),
            ("1234", "EUR", "1234.00"),
            (" 99.9 ", "usd", "99.90"),
            ("12.500", "EUR", "12.50"),  # exact: trailing zeros lose nothing
            ("1000", "JPY", "1000"),
            ("12.345", "KWD", "12.345"),
            ("0.01", "EUR", "0.01"),
        ],
    )
    def test_good_amounts_are_exact(self, text: str, currency: str, expected: str) -> None:
        amount = parse_amount(text, currency)
        assert isinstance(amount, Decimal)
        assert str(amount) == expected

    @pytest.mark.parametrize(
        ("text", "currency", "message"),
        [
            ("12,50", "EUR", "amount '12,50' is not a number: use a dot for decimals"),
            ("1,234.50", "EUR", "without thousands separators"),
            ("1.234,50", "EUR", "without thousands separators"),
            ("", "EUR", "an amount is required"),
            ("0", "EUR", "must be more than zero"),
            ("0.00", "EUR", "must be more than zero"),
            ("-5", "EUR", "must be more than zero"),
            ("12.345", "EUR", "EUR has at most 2 decimals"),
            ("1000.5", "JPY", "JPY has no decimals"),
            ("abc", "EUR", "is not a number"),
            ("1e3", "EUR", "is not a number"),
            ("NaN", "EUR", "is not a number"),
            ("€12", "EUR", "is not a number"),
            ("1" * 16, "EUR", "too large"),
            ("12", "EURO", "not a currency code"),
        ],
    )
    def test_bad_amounts_say_what_is_wrong(self, text: str, currency: str, message: str) -> None:
        with pytest.raises(ValueError, match=re.escape(message)):
            parse_amount(text, currency)


class TestCurrencies:
    @pytest.mark.parametrize(
        ("text", "expected"), [("eur", "EUR"), (" Usd ", "USD"), ("JPY", "JPY")]
    )
    def test_codes_are_upper_case(self, text: str, expected: str) -> None:
        assert clean_currency(text) == expected

    @pytest.mark.parametrize(
        ("text", "message"),
        [
            ("€", "a sign, not a currency code: write EUR"),
            ("XAU", "not an ISO 4217 currency code"),  # gold is not an invoice currency
            ("euro", "not a currency code"),
            ("", "a currency is required"),
        ],
    )
    def test_not_a_currency(self, text: str, message: str) -> None:
        with pytest.raises(ValueError, match=message):
            clean_currency(text)

    def test_minor_digits_follow_iso_4217(self) -> None:
        assert [minor_digits(c) for c in ("EUR", "JPY", "KWD", "CLF")] == [2, 0, 3, 4]
        assert len(CURRENCIES) > 150
