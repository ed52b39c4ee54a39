"""The end of a reply's new text: signature, mobile footer, closing and the writer's name.

Once the quoted history is gone (:mod:`toma.core.reading.replytext`), what is
left may still end in lines the writer did not write for this message:

- a signature after the "-- " delimiter, or under a rule of dashes, em dashes or
  underscores that only short lines follow (a business card, a mailing list
  footer);
- a line a mail program adds: "Sent from my iPhone", "Von meinem iPhone
  gesendet", "Inviato da BlackBerry", "Get Outlook for iOS", "Télécharger
  Outlook pour Android", in the languages the inbox reads;
- a closing ("Best regards,", "Viele Grüße", "Cordialement", "Mvh,", "Med
  venlig hilsen / Kind regards", "Cheers 🎉") near the end, with at most a short
  name block after it;
- the writer's name alone on the last line, after a blank line ("Stranger",
  "/B", "-Maarten de Jong").

Every rule here only ever removes lines at the end, and never the first
paragraph: a message that is nothing but "Thanks!" stays "Thanks!".
"""

from __future__ import annotations

import re

SIGNATURE = re.compile(r"^(?:-- ?|--|__)\s*$")
# A rule of dashes, em dashes, underscores or equals signs, alone on its line.
_RULE = re.compile(r"^\s*[-_=—–]{3,}\s*$")
_SENT_FROM = re.compile(
    r"^\s*(?:sent from (?:my|mail|outlook|yahoo|samsung|windows|the)\b|sent with \w+|"
    r"sent via \w+|sent using \w+|get outlook for|download outlook for|"
    r"von meinem \S+ gesendet|gesendet von (?:meinem|outlook|mail|yahoo|samsung)|"
    r"gesendet mit \w+|envoyé de mon|envoye de mon|envoyé depuis|envoye depuis|"
    r"télécharger outlook pour|telecharger outlook pour|obtenir outlook pour|"
    r"enviado desde (?:mi|outlook|yahoo|samsung)|enviado do (?:meu|outlook)|"
    r"obter o outlook para|descargar outlook para|inviato da|scarica outlook per|"
    r"verzonden (?:vanaf|met) mijn|verstuurd vanaf mijn|verstuurd met|outlook voor (?:ios|android)|"
    r"skickat från min|skickat från (?:outlook|yahoo)|hämta outlook för|sendt fra min|"
    r"sendt fra (?:outlook|yahoo)|hent outlook til|wysłane z|wysłano z|pobierz outlook|"
    r"odesláno z|lähetetty|отправлено с|küldve (?:az|a) )",
    re.IGNORECASE,
)
_CLOSING_WORDS = (
    r"best|best regards|best wishes|kind regards|warm regards|warmest regards|regards|"
    r"many thanks|thanks|thanks again|thank you|thx|cheers|all the best|sincerely|"
    r"yours|yours sincerely|yours truly|br|talk soon|speak soon|take care|warmly|"
    r"mit freundlichen grüßen|mit freundlichen grüssen|freundliche grüße|freundliche grüsse|"
    r"viele grüße|viele grüsse|beste grüße|beste grüsse|liebe grüße|liebe grüsse|"
    r"herzliche grüße|herzliche grüsse|schöne grüße|grüße|grüsse|lg|vg|bg|mfg|gruß|gruss|"
    r"cordialement|bien cordialement|bien à vous|bien à toi|salutations|bonne journée|"
    r"à bientôt|a bientôt|amitiés|bises|merci|"
    r"saludos|saludos cordiales|un saludo|un cordial saludo|atentamente|gracias|"
    r"cordiali saluti|saluti|distinti saluti|un saluto|buona giornata|grazie|"
    r"met vriendelijke groet|met vriendelijke groeten|vriendelijke groet|vriendelijke groeten|"
    r"groeten|groet|groetjes|hartelijke groet|mvg|"
    r"atenciosamente|abraços|abraço|cumprimentos|obrigado|obrigada|"
    r"med vänlig hälsning|med vänliga hälsningar|vänliga hälsningar|vänligen|hälsningar|"
    r"med venlig hilsen|venlig hilsen|med vennlig hilsen|vennlig hilsen|hilsen|mvh|"
    r"pozdrawiam|z poważaniem|serdecznie pozdrawiam|pozdrowienia|"
    r"ystävällisin terveisin|terveisin|s pozdravem|s přáním hezkého dne|"
    r"üdvözlettel|udvozlettel|с уважением"
)
# One closing, or two side by side in two languages ("Med venlig hilsen / Kind regards").
_CLOSING = re.compile(
    rf"^(?:{_CLOSING_WORDS})(?:\s*/\s*(?:{_CLOSING_WORDS}))?$",
    re.IGNORECASE,
)
# The name a writer signs with: one to four words, each starting with a capital
# but for particles ("Stranger", "Michael Scott", "B", "-Maarten de Jong", "/B").
_NAME = re.compile(
    r"^[/~–—-]?\s?[A-ZÀ-ÞĀ-Ž][\w'.-]*"
    r"(?:\s(?:[A-ZÀ-ÞĀ-Ž][\w'.-]*|de|van|von|der|den|da|di|du|le|la|del|dos|af|av)){0,3}$"
)
# Short answers that look like a name but are the message.
_NOT_NAMES = re.compile(
    r"^(?:yes|no|ok|okay|sure|thanks|great|perfect|done|agreed|fine|good|cool|noted|"
    r"ja|nein|gut|danke|oui|non|merci|parfait|si|sí|vale|gracias|perfetto|nee|prima|"
    r"tak|nej|bra|tack|sim|não|obrigado|tomorrow|today|morgen|heute|demain|mañana|domani|"
    r"monday|tuesday|wednesday|thursday|friday|saturday|sunday|"
    r"montag|dienstag|mittwoch|donnerstag|freitag|samstag|sonntag|"
    r"lundi|mardi|mercredi|jeudi|vendredi|samedi|dimanche|"
    r"lunes|martes|miércoles|jueves|viernes|sábado|domingo|"
    r"maandag|dinsdag|woensdag|donderdag|vrijdag|zaterdag|zondag)$",
    re.IGNORECASE,
)
# What a card holds: an address, a link or a telephone number.
_CONTACT = re.compile(r"@|https?:|www\.|\+?\d[\d ()./-]{6,}\d")
_LOOK_BACK = 8  # a closing is looked for among the last lines only
_CARD_LINES = 10  # lines a signature card under a rule may take


def drop_signoff(lines: list[str]) -> list[str]:
    """*lines* without what a signature, a mail program or a sign-off adds at the end."""
    lines = _drop_signature(lines)
    lines = _drop_closing(lines)
    return _drop_name(lines)


def _drop_signature(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if SIGNATURE.match(line) or _SENT_FROM.match(line):
            lines = lines[:index]
            break
    lines = _trim(lines)
    # A card is short, so its rule is among the last lines; looking no further
    # keeps this linear however many rules a message holds.
    for index in range(max(1, len(lines) - _CARD_LINES - 1), len(lines)):
        if _RULE.match(lines[index]) and _card(lines[index + 1 :]):
            return _trim(lines[:index])
    return lines


def _drop_closing(lines: list[str]) -> list[str]:
    for index in range(len(lines) - 1, max(-1, len(lines) - _LOOK_BACK), -1):
        if _CLOSING.match(_bare(lines[index])):
            if index > 0 and _short_block(lines[index + 1 :], 5):
                return _trim(lines[:index])
            break
    return lines


def _drop_name(lines: list[str]) -> list[str]:
    """The writer's name alone on the last line, after a blank line."""
    if len(lines) < 3 or lines[-2].strip() or not any(line.strip() for line in lines[:-2]):
        return lines
    last = lines[-1].strip()
    if len(last) > 40 or _NOT_NAMES.match(last.strip(".!")) or last.endswith((".", "?", ":")):
        return lines
    if _NAME.match(last):
        return _trim(lines[:-1])
    return lines


def _bare(line: str) -> str:
    """The words of a line, without the punctuation, emoji or bold marks around them."""
    start, end = 0, len(line)
    while start < end and not line[start].isalnum():
        start += 1
    while end > start and not line[end - 1].isalnum():
        end -= 1
    return " ".join(line[start:end].split())


def _short_block(lines: list[str], most: int) -> bool:
    """True if *lines* hold at most *most* non-empty lines, none of them long."""
    filled = [line for line in lines if line.strip()]
    return len(filled) <= most and all(len(line.strip()) <= 80 for line in filled)


def _card(lines: list[str]) -> bool:
    """True if *lines* read like a business card or a list footer, not a postscript."""
    filled = [line for line in lines if line.strip()]
    return (
        len(filled) >= 2
        and _short_block(filled, _CARD_LINES)
        and any(_CONTACT.search(line) for line in filled)
    )


def _trim(lines: list[str]) -> list[str]:
    end = len(lines)
    while end and not lines[end - 1].strip():
        end -= 1
    return lines[:end]
