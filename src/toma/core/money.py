"""Money: ISO 4217 currencies, exact amounts, and how they read in a given language.

An amount is a :class:`~decimal.Decimal`, never a float, and never has more
decimals than its currency's minor unit (two for EUR, none for JPY, three for
KWD), as ISO 4217 defines it. The table below is ISO's, not CLDR's: CLDR rounds
some currencies for display (RSD or IQD show no decimals), and an invoice for
100.50 RSD must never read "100 RSD".

Formatting follows the reader's language through Babel (CLDR data) when it is
installed: 1234.5 EUR is "€1,234.50" in English and "1.234,50 €" in German
(with a no-break space before the sign, so that it never wraps onto a line of
its own). Without Babel a small fallback keeps the digits right for every
currency and the separators right for a few languages.

Functions raise ``ValueError`` with a message fit to show the user; callers add
where (the file, the row, the option).
"""

from __future__ import annotations

import copy
import re
from datetime import date
from decimal import Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

try:  # Babel is preferred (CLDR data for every language), not required
    from babel.core import Locale, UnknownLocaleError
    from babel.dates import format_date as _babel_format_date

    HAVE_BABEL = True
except ImportError:  # pragma: no cover - exercised by forcing the fallback in tests
    HAVE_BABEL = False

# ISO 4217 (list one, current), by number of minor-unit digits. Precious metals,
# SDRs and test codes (XAU, XDR, XTS, XXX, …) have no minor unit and are no
# currency an invoice is written in, so they are left out on purpose.
_ZERO = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE = "BHD IQD JOD KWD LYD OMR TND"
_FOUR = "CLF UYW"
_TWO = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD "
    "BTN BWP BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUC CUP CVE CZK DKK DOP DZD "
    "EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR "
    "IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP "
    "MRU MUR MVR MWK MXN MXV MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN "
    "QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SLL SOS SRD SSP STN SVC SYP SZL "
    "THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED VES WST XCD XCG YER ZAR "
    "ZMW ZWG ZWL"
)
MINOR_DIGITS: dict[str, int] = {
    **dict.fromkeys(_TWO.split(), 2),
    **dict.fromkeys(_ZERO.split(), 0),
    **dict.fromkeys(_THREE.split(), 3),
    **dict.fromkeys(_FOUR.split(), 4),
}
CURRENCIES: frozenset[str] = frozenset(MINOR_DIGITS)

# Large enough for any invoice, small enough that a slip (a pasted IBAN) is caught.
_MAX_INTEGER_DIGITS = 15
_AMOUNT = re.compile(r"^\d+(\.\d+)?\Z")
_CODE = re.compile(r"^[A-Z]{3}\Z")
_SYMBOLS = {"€": "EUR", "$": "USD", "£": "GBP", "¥": "JPY"}


def clean_currency(text: str) -> str:
    """``text`` as an ISO 4217 code in upper case ("eur" → "EUR"), or ``ValueError``."""
    code = str(text).strip().upper()
    if code in CURRENCIES:
        return code
    if code in _SYMBOLS:
        raise ValueError(
            f"{text.strip()!r} is a sign, not a currency code: write {_SYMBOLS[code]} "
            "(ISO 4217, such as EUR, USD, GBP)"
        )
    if not code:
        raise ValueError("a currency is required (ISO 4217, such as EUR, USD, GBP)")
    if _CODE.match(code):
        raise ValueError(f"{code!r} is not an ISO 4217 currency code (such as EUR, USD, GBP)")
    raise ValueError(
        f"{text.strip()!r} is not a currency code: use the three letters of ISO 4217, "
        "such as EUR, USD, GBP"
    )


def minor_digits(currency: str) -> int:
    """How many decimals ``currency`` has (2 for EUR, 0 for JPY, 3 for KWD)."""
    return MINOR_DIGITS[clean_currency(currency)]


def parse_amount(text: str, currency: str) -> Decimal:
    """An amount as written by a person ("1234.50"), exact, checked against ``currency``.

    The result carries exactly the currency's decimals ("1234.5" EUR → 1234.50).
    A comma is refused rather than guessed at: "1,234" is a thousand in one
    country and one and a quarter in the next, and money must not be guessed.
    """
    code = clean_currency(currency)
    written = str(text).strip()
    if not written:
        raise ValueError("an amount is required (such as 1234.50)")
    if written.startswith("-") and _AMOUNT.match(written[1:].strip()):
        raise ValueError(f"amount {written!r} must be more than zero")
    if not _AMOUNT.match(written):
        if re.fullmatch(r"\d+,\d{1,4}", written):
            raise ValueError(f"amount {written!r} is not a number: use a dot for decimals")
        if re.fullmatch(r"[\d.,'\s\u00a0\u202f]+", written):
            raise ValueError(
                f"amount {written!r} is not a number: write it without thousands "
                "separators and with a dot for decimals (such as 1234.50)"
            )
        raise ValueError(f"amount {written!r} is not a number (such as 1234.50)")
    try:
        amount = Decimal(written)
    except InvalidOperation:  # pragma: no cover - the pattern admits only digits and a dot
        raise ValueError(f"amount {written!r} is not a number (such as 1234.50)") from None
    return check_amount(amount, code, written=written)


def check_amount(amount: Decimal, currency: str, *, written: str | None = None) -> Decimal:
    """``amount`` if it can be invoiced in ``currency``, at the currency's decimals."""
    code = clean_currency(currency)
    shown = written if written is not None else str(amount)
    if not amount.is_finite():
        raise ValueError(f"amount {shown!r} is not a number (such as 1234.50)")
    if amount <= 0:
        raise ValueError(f"amount {shown!r} must be more than zero")
    digits = MINOR_DIGITS[code]
    exponent = amount.as_tuple().exponent
    assert isinstance(exponent, int)  # noqa: S101 - finite, checked above
    if -exponent > digits and amount != amount.quantize(_quantum(digits)):
        if digits == 0:
            raise ValueError(f"amount {shown!r}: {code} has no decimals (such as 1000)")
        raise ValueError(f"amount {shown!r}: {code} has at most {digits} decimals")
    if amount.adjusted() >= _MAX_INTEGER_DIGITS:
        raise ValueError(f"amount {shown!r} is too large for an invoice")
    return amount.quantize(_quantum(digits))


def _quantum(digits: int) -> Decimal:
    return Decimal(1).scaleb(-digits)


def format_money(amount: Decimal, currency: str, locale: str = "en") -> str:
    """``amount`` as a reader of ``locale`` writes it: "€1,234.50" (en), "1.234,50 €" (de).

    Always with the currency's ISO decimals: "¥1,000", never "¥1,000.00".
    """
    code = clean_currency(currency)
    digits = MINOR_DIGITS[code]
    value = Decimal(amount).quantize(_quantum(digits))
    if HAVE_BABEL:
        babel_locale = _locale(locale)
        pattern = _pattern(str(babel_locale), digits)
        # currency_digits=False: the pattern's decimals are ISO's (see the module docstring).
        return str(pattern.apply(value, babel_locale, currency=code, currency_digits=False))
    return _fallback_money(value, code, digits, _language(locale))


def format_day(day: date, locale: str = "en") -> str:
    """A date as a reader of ``locale`` writes it in a letter: "March 2, 2026", "2. März 2026"."""
    if HAVE_BABEL:
        return str(_babel_format_date(day, "long", locale=_locale(locale)))
    return _fallback_day(day, _language(locale))


def is_locale(text: str) -> bool:
    """Whether ``text`` names a language :func:`format_money` can write in."""
    try:
        _locale(text) if HAVE_BABEL else _language(text)
    except ValueError:
        return False
    return True


@lru_cache(maxsize=64)
def _locale(text: str) -> Any:
    name = str(text).strip().replace("-", "_")
    try:
        return Locale.parse(name)
    except (UnknownLocaleError, ValueError, TypeError):
        raise ValueError(f"{text!r} is not a known locale (such as en, de, fr_CH)") from None


@lru_cache(maxsize=128)
def _pattern(locale: str, digits: int) -> Any:
    pattern = copy.copy(Locale.parse(locale).currency_formats["standard"])
    pattern.frac_prec = (digits, digits)
    return pattern


# --- without Babel -----------------------------------------------------------

_NBSP = "\u00a0"
_NNBSP = "\u202f"
# group separator, decimal separator, sign before the number (else after it)
_STYLES: dict[str, tuple[str, str, bool]] = {
    "en": (",", ".", True),
    "de": (".", ",", False),
    "es": (".", ",", False),
    "it": (".", ",", False),
    "fr": (_NNBSP, ",", False),
}
_FALLBACK_SIGNS = {"EUR": "€", "GBP": "£", "JPY": "¥", "USD": "$"}
_MONTHS = (
    "January", "February", "March", "April", "May", "June",
    "July", "August", "September", "October", "November", "December",
)  # fmt: skip


def _language(text: str) -> str:
    name = str(text).strip().replace("-", "_")
    language = name.partition("_")[0].lower()
    if not re.fullmatch(r"[a-z]{2,3}", language):
        raise ValueError(f"{text!r} is not a known locale (such as en, de, fr_CH)")
    return language


def _fallback_money(value: Decimal, code: str, digits: int, language: str) -> str:
    group, point, before = _STYLES.get(language, ("", ".", False))
    whole, _, fraction = f"{value:,.{digits}f}".partition(".")
    number = whole.replace(",", group) + (point + fraction if digits else "")
    sign = _FALLBACK_SIGNS.get(code) if language in _STYLES else None
    if sign is None:
        # An unknown language gets the code, which every reader understands.
        return f"{code}{_NBSP}{number}" if before else f"{number}{_NBSP}{code}"
    return f"{sign}{number}" if before else f"{number}{_NBSP}{sign}"


def _fallback_day(day: date, language: str) -> str:
    if language == "en":
        return f"{_MONTHS[day.month - 1]} {day.day}, {day.year}"
    # ISO 8601 reads the same in every language.
    return day.isoformat()
