"""Does a message read like a pitch? Findings for `toma check`, one per line and reason.

Keep-in-touch mail is a note from a person, not a sales letter. The signs that
a text has turned into one are few and plain, and the same in every language
the inbox reads (English, German, French, Spanish, Italian, Dutch, Portuguese,
Swedish, Danish, Polish):

- a price ("€99", "49 EUR", "$29.99") or a discount ("20% off", "-30 %",
  "Rabattcode", "code promo");
- urgency: "last chance", "only until Friday", "limited time", "nur noch bis",
  "dernière chance", "última oportunidad";
- a call to buy or to book a sales call: "buy now", "book a demo", "jetzt
  kaufen", "réservez une démo", "free trial";
- several links to pricing, shop, checkout or demo pages;
- shouting: three words in capitals in a row, or "!!".

Each rule is specific on purpose: a warning the owner learns to ignore is worse
than none, so a text is flagged only for words that a friendly note does not
use (bench/tone.py measures it on real messages). Template code (``{{ … }}``,
``{% … %}``, ``{# … #}``) is blanked before reading, so a field in capitals or a
variable's name never counts. The function is pure: text in, findings out.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The front-matter key by which a template says it knows: ``pitch: ok`` silences it.
SILENCE_KEY = "pitch"


@dataclass(frozen=True)
class Finding:
    """One reason a text reads like a pitch, on one line (1-based, of the text given)."""

    line: int
    kind: str  # price, discount, urgency, call, links, shouting
    excerpt: str
    reason: str
    advice: str


_ADVICE = {
    "price": "leave prices to a conversation they ask for",
    "discount": "leave offers out of a personal note",
    "urgency": "a friend has no deadline for you: drop the countdown",
    "call": "ask how they are, not to buy; let them come to you",
    "links": "one link to something useful is plenty",
    "shouting": "write in sentence case, one '!' at most",
}
_REASON = {
    "price": "a price",
    "discount": "a discount",
    "urgency": "urgency",
    "call": "a call to buy",
    "links": "several links to sales pages",
    "shouting": "shouting",
}

_CURRENCY = r"(?:€|\$|£|¥|EUR|USD|GBP|CHF|SEK|DKK|NOK|PLN|zł|kr)"
_PRICE = re.compile(
    rf"(?:{_CURRENCY}\s?\d[\d.,]{{0,12}}|\b\d[\d.,]{{0,12}}\s?{_CURRENCY}(?![A-Za-z]))"
)
_DISCOUNT = re.compile(
    r"\b\d{1,2}\s?%\s?(?:off|discount|rabatt|de réduction|de remise|de descuento|"
    r"di sconto|korting|de desconto|rabat|zniżki)\b|"
    r"(?:^|\s)-\s?\d{1,2}\s?%|"
    r"\b(?:discount code|promo code|coupon code|voucher code|use code|gutscheincode|rabattcode|"
    r"code promo|code de réduction|código promocional|código de descuento|codice sconto|"
    r"kortingscode|código de desconto|rabattkod|rabatkode|kod rabatowy|"
    r"special offer|exclusive offer|sonderangebot|offre spéciale|oferta especial|"
    r"offerta speciale|speciale aanbieding|oferta exclusiva)\b",
    re.IGNORECASE,
)
_DAYS = (
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|midnight|tonight|"
    r"montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|mitternacht|"
    r"lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|minuit|"
    r"lunes|martes|miércoles|jueves|viernes|sábado|domingo|medianoche|"
    r"lunedì|martedì|mercoledì|giovedì|venerdì|sabato|domenica|mezzanotte|"
    r"maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag|middernacht"
)
_URGENCY = re.compile(
    # "only until Friday" first, so that the whole of it is quoted back
    rf"\b(?:only|nur|seulement|solo|sólo|alleen|apenas|endast|kun|tylko)\s+"
    rf"(?:until|till|bis|jusqu'à|jusqu'au|hasta|fino a|tot|até|till|til|do)\s+(?:{_DAYS})\b|"
    r"\b(?:last chance|final chance|only until|only till|ends (?:today|tonight|soon|"
    r"on|at|this)|offer ends|sale ends|limited[- ]time|limited offer|while (?:stocks|supplies) "
    r"last|don'?t miss (?:out|this)|act now|hurry|expires (?:today|tonight|soon|on|at)|"
    r"only \d+ (?:spots|seats|places|left)|before it'?s too late|"
    r"letzte chance|nur noch bis|nur bis|endet (?:heute|morgen|am|um)|nur für kurze zeit|"
    r"zeitlich begrenzt|nicht verpassen|solange der vorrat reicht|"
    r"dernière chance|derniere chance|seulement jusqu'|offre limitée|durée limitée|"
    r"ne manquez pas|ne ratez pas|jusqu'à épuisement des stocks|"
    r"última oportunidad|ultima oportunidad|solo hasta|sólo hasta|oferta limitada|"
    r"tiempo limitado|no te lo pierdas|hasta agotar existencias|"
    r"ultima occasione|ultima possibilità|solo fino a|offerta limitata|tempo limitato|"
    r"non perdere|fino ad esaurimento scorte|"
    r"laatste kans|alleen tot|slechts tot|beperkte tijd|op=op|mis het niet|"
    r"última chance|ultima chance|só até|somente até|por tempo limitado|não perca|"
    r"sista chansen|endast till|bara till|begränsad tid|missa inte|"
    r"sidste chance|kun til|begrænset tid|gå ikke glip|"
    r"ostatnia szansa|tylko do|ograniczony czas|nie przegap)\b",
    re.IGNORECASE,
)
_CALL = re.compile(
    r"\b(?:buy now|buy today|order now|order today|shop now|book a demo|book your demo|"
    r"schedule a demo|request a demo|get a demo|book a (?:sales )?call|sign up now|sign up today|"
    r"subscribe now|upgrade now|upgrade today|claim your|add to cart|start your free trial|"
    r"free trial|get started today|click here to (?:buy|order|get|claim)|"
    r"jetzt kaufen|jetzt bestellen|jetzt buchen|jetzt sichern|demo buchen|demo vereinbaren|"
    r"kostenlos testen|gratis testen|in den warenkorb|"
    r"achetez maintenant|achetez dès|commandez maintenant|commandez dès|réservez une démo|"
    r"demandez une démo|essai gratuit|ajouter au panier|"
    r"compra ahora|compre ya|pide ya|reserva una demo|solicita una demo|prueba gratuita|"
    r"acquista ora|ordina ora|prenota una demo|richiedi una demo|prova gratuita|"
    r"koop nu|bestel nu|boek een demo|vraag een demo aan|gratis proberen|proefperiode|"
    r"compre agora|compre já|peça já|agende uma demo|teste grátis|"
    r"köp nu|beställ nu|boka en demo|prova gratis|"
    r"køb nu|bestil nu|book en demo|prøv gratis|"
    r"kup teraz|zamów teraz|umów demo|wypróbuj za darmo)\b",
    re.IGNORECASE,
)
_SALES_LINK = re.compile(
    r"https?://\S*?/(?:pricing|prices|price|plans|preise|tarife|tarifs|prix|precios|prezzi|"
    r"prijzen|precos|preços|priser|cennik|buy|checkout|cart|order|shop|store|demo|sales|"
    r"offer|offers|deal|deals|promo|sale|subscribe|upgrade)\b",
    re.IGNORECASE,
)
# Three words in capitals in a row, each of two letters or more ("FREE SHIPPING TODAY").
_CAPS_RUN = re.compile(r"\b[A-ZÄÖÜÀ-Þ]{2,}(?:[\s,.!-]+[A-ZÄÖÜÀ-Þ]{2,}\b){2,}")
_BANGS = re.compile(r"!{2,}|¡{2,}")
_TEMPLATE_CODE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_LINKS_ENOUGH = 2  # this many sales links in one text is a sales page, not a note
_LINE_LIMIT = 2000  # characters of a line read: a template's lines are short


def pitch_findings(text: str) -> list[Finding]:
    """Every reason *text* (a template's body, Jinja and Markdown as written) reads like a pitch."""
    plain = _TEMPLATE_CODE.sub(lambda m: re.sub(r"[^\n]", " ", m.group()), text)
    findings: list[Finding] = []
    sales_links: list[tuple[int, str]] = []
    for number, line in enumerate(plain.splitlines(), start=1):
        line = line[:_LINE_LIMIT]
        for kind, rule in (
            ("discount", _DISCOUNT),
            ("price", _PRICE),
            ("urgency", _URGENCY),
            ("call", _CALL),
            ("shouting", _CAPS_RUN),
            ("shouting", _BANGS),
        ):
            found = rule.search(line)
            if found and not (kind == "price" and _mentions(findings, number, "discount")):
                findings.append(_finding(number, kind, found.group()))
        sales_links.extend((number, m.group()) for m in _SALES_LINK.finditer(line))
    if len(sales_links) >= _LINKS_ENOUGH:
        number, link = sales_links[_LINKS_ENOUGH - 1]
        findings.append(_finding(number, "links", link))
    return _one_per_line_and_kind(findings)


def _finding(line: int, kind: str, excerpt: str) -> Finding:
    excerpt = " ".join(excerpt.split())
    return Finding(
        line=line,
        kind=kind,
        excerpt=excerpt[:60],
        reason=f'{_REASON[kind]} ("{excerpt[:60]}")',
        advice=_ADVICE[kind],
    )


def _mentions(findings: list[Finding], line: int, kind: str) -> bool:
    return any(f.line == line and f.kind == kind for f in findings)


def _one_per_line_and_kind(findings: list[Finding]) -> list[Finding]:
    seen: set[tuple[int, str]] = set()
    kept = []
    for finding in sorted(findings, key=lambda f: f.line):
        if (finding.line, finding.kind) not in seen:
            seen.add((finding.line, finding.kind))
            kept.append(finding)
    return kept
