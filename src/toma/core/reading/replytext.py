"""The new text of a reply: quoted history and signature removed.

Mail clients mark the start of quoted history in a handful of ways, in the
writer's language: an attribution line ("On Mon, 2 Apr 2012, Bob wrote:", "Am …
schrieb …:", "Le … a écrit :"), a separator ("-----Original Message-----"), an
Outlook header block ("From: … / Sent: … / To: … / Subject: …", "Von: … Gesendet:
…") or lines starting with ">". The text is cut at the first of these. Replies
written *between* quoted lines keep their own lines.

After that the signature goes: everything from the "-- " delimiter, a "Sent from
my iPhone" line (in many languages), and a closing block ("Best regards,\nJo")
at the very end. HTML-only mail is made plain first (see
:func:`toma.core.reading.mimetext.html_to_text`), which already drops ``<blockquote>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

# Every rule here is written to cost time linear in the line it reads: no two
# runs that can match the same characters side by side ("\s*:?\s*" is written
# "\s*(?::\s*)?"), and lines are read by the rules only up to a bound.

_WROTE_END = (
    r"(?:wrote|writes|schrieb|schreef|a écrit|a ecrit|escribió|escribio|ha scritto|scrisse|"
    r"escreveu|skrev|skriver|napisał\(a\)|napisał|napisała|pisze|написал\(а\)|написал|"
    r"написала|kirjoitti|napsal\(a\)|napsal|napsala|yazdı|írta|het volgende geschreven|"
    r"het volgende)\s*(?::\s*)?$"
)
# An attribution is a line ending in "wrote:" and its kin. It was written as
# "^\s*(?:>+\s*)?(?:-{2,}\s*)?(?:on\b.*|am\b.*|…|.*<[^>]*@[^>]*>.*|.*\S+@\S+.*|.*)"
# followed by the verb; since the last choice, ".*", takes any start, the
# others never changed what matched — but they made a failing match cost up to
# the fourth power of the line (200 characters of "<@>": 8 s). The search
# below matches exactly the same lines.
_ATTRIBUTION = re.compile(_WROTE_END, re.IGNORECASE)
# "Am 20.11.2026 um 10:00 schrieb Bob <bob@x>:" — the verb before the name.
_ATTRIBUTION_VERB_FIRST = re.compile(
    r"^\s*(?:am|op|den|le|el|il|em|w dniu|dnia|on)\b.{0,200}\b(?:schrieb|schreef|skrev|skriver|"
    r"a écrit|escribió|escreveu|ha scritto|napisał|wrote)\b.{0,200}:\s*$",
    re.IGNORECASE,
)
# "On Sun, Jun 9, 2013 at 1:39 PM, eviltrout via Discourse Meta\n<reply@…> wrote:"
_ATTRIBUTION_START = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:on|am|le|el|il|op|em|den|w dniu|dnia)\s+.{3,}", re.IGNORECASE
)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*[-_=]{2,}\s*(?:original message|original-nachricht|ursprüngliche nachricht|"
    r"message d'origine|message original|mensaje original|messaggio originale|"
    r"oorspronkelijk bericht|origineel bericht|mensagem original|originalmeddelelse|"
    r"ursprungligt meddelande|opprinnelig melding|alkuperäinen viesti|wiadomość oryginalna|"
    r"původní zpráva|исходное сообщение|reply message|original e-?mail|forwarded message|"
    r"weitergeleitete nachricht|message transféré)\s*[-_=]*\s*$",
    re.IGNORECASE,
)
_FROM_FIELD = re.compile(
    r"^\s*\*?(?:from|von|de|da|van|från|fra|od|lähettäjä|от|kimden|feladó|差出人|发件人|寄件者)"
    r"\s*(?:\*\s*)?:",
    re.IGNORECASE,
)
_OTHER_FIELD = re.compile(
    r"^\s*\*?(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|envoye|date|à|a|objet|"
    r"enviado|fecha|para|asunto|inviato|data|oggetto|verzonden|aan|onderwerp|skickat|till|"
    r"ämne|sendt|til|emne|wysłano|do|temat|lähetetty|vastaanottaja|aihe|отправлено|кому|"
    r"тема|送信日時|宛先|件名|发送时间|收件人|主题)\s*(?:\*\s*)?:",
    re.IGNORECASE,
)
_OUTLOOK_RULE = re.compile(r"^\s*_{10,}\s*$")
_SENT_FROM = re.compile(
    r"^\s*(?:sent from (?:my|mail|outlook|yahoo|samsung|windows)\b|sent with \w+|sent via \w+|"
    r"get outlook for|von meinem \S+ gesendet|gesendet von meinem|envoyé de mon|envoye de mon|"
    r"enviado desde mi|enviado do meu|inviato da|verzonden (?:vanaf|met) mijn|"
    r"skickat från min|sendt fra min|wysłane z|lähetetty|отправлено с)\b",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^(?:-- ?|--|__)\s*$")
_CLOSING = re.compile(
    r"^\s*(?:best(?: regards| wishes)?|kind regards|warm regards|regards|many thanks|thanks|"
    r"thank you|cheers|all the best|sincerely|yours(?: sincerely| truly)?|br|"
    r"mit freundlichen grüßen|mit freundlichen grüssen|viele grüße|viele grüsse|"
    r"beste grüße|liebe grüße|lg|mfg|gruß|gruss|cordialement|bien (?:à vous|cordialement)|"
    r"salutations|bonne journée|saludos(?: cordiales)?|un saludo|atentamente|"
    r"cordiali saluti|saluti|distinti saluti|met vriendelijke groet(?:en)?|"
    r"vriendelijke groet(?:en)?|groeten|atenciosamente|abraços|obrigad[oa]|"
    r"med vänlig hälsning|vänliga hälsningar|hälsningar|med venlig hilsen|venlig hilsen|"
    r"med vennlig hilsen|hilsen|pozdrawiam|z poważaniem|ystävällisin terveisin|"
    r"s pozdravem|с уважением)\s*(?:[,.!]\s*)?$",
    re.IGNORECASE,
)


def _no_check() -> None:
    """No budget to keep to."""


# The main loop over the lines calls its check this often.
_CHECK_EVERY = 256


def new_text(text: str, *, check: Callable[[], None] = _no_check) -> str:
    """The part of *text* that the sender wrote for this message.

    *check* is called every few hundred lines; it raises to stop (see
    :func:`toma.core.reading.classify.read_message`).
    """
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\xa0", " ")
    lines = text.split("\n")
    lines = [line.rstrip() for line in lines]
    cut = _history_start(lines, check)
    head = lines[:cut]
    tail = lines[cut:]
    kept = [line for line in head if not _quoted(line)]
    kept.extend(_interleaved(tail))
    kept = _drop_signature(kept)
    result = "\n".join(kept)
    return re.sub(r"\n{3,}", "\n\n", result).strip()


def _quoted(line: str) -> bool:
    return line.lstrip().startswith(">")


def _history_start(lines: list[str], check: Callable[[], None]) -> int:
    """Index of the first line of quoted history, or len(lines)."""
    for index, line in enumerate(lines):
        if index % _CHECK_EVERY == 0:
            check()
        stripped = line.strip()
        if not stripped or len(stripped) > 400:
            continue  # attributions and separators are short; long lines are text
        if _ORIGINAL_MESSAGE.match(stripped):
            return index
        if _OUTLOOK_RULE.match(stripped) and _header_block(lines, index + 1):
            return index
        if not _quoted(stripped) and (
            _ATTRIBUTION.search(stripped) or _ATTRIBUTION_VERB_FIRST.match(stripped)
        ):
            return index
        if _folded_attribution(lines, index):
            return index
        if _FROM_FIELD.match(stripped) and _header_block(lines, index):
            return index
    return len(lines)


def _folded_attribution(lines: list[str], index: int) -> bool:
    """An attribution folded over two or three lines ("On …, Bob\n<bob@x> wrote:")."""
    stripped = lines[index].strip()
    if stripped.endswith((".", "?", "!")) or _quoted(stripped):
        return False
    if not (_ATTRIBUTION_START.match(stripped) or re.match(r"\d", stripped) or "@" in stripped):
        return False
    for width in (2, 3):
        candidate = " ".join(part.strip() for part in lines[index : index + width])
        if len(candidate) < 400 and re.search(_WROTE_END, candidate, re.IGNORECASE):
            return True
    return False


def _header_block(lines: list[str], index: int) -> bool:
    """True if lines from *index* look like a quoted message's header block."""
    window = [line for line in lines[index : index + 8] if line.strip()][:6]
    if not window or not _FROM_FIELD.match(window[0].lstrip("> ")):
        return False
    fields = sum(1 for line in window[1:] if _OTHER_FIELD.match(line.lstrip("> ")))
    return fields >= 2 or (fields >= 1 and len(window) <= 3)


def _interleaved(tail: list[str]) -> list[str]:
    """Lines of the writer's own between quoted ones ("> question\\nanswer")."""
    if not tail:
        return []
    body = tail[1:]
    first_quote = next((i for i, line in enumerate(body) if _quoted(line)), None)
    if first_quote is None:
        return []
    own: list[str] = []
    for line in body[first_quote:]:
        if _quoted(line):
            continue
        short = line.strip() if len(line) <= 400 else ""
        if _FROM_FIELD.match(short) or _ATTRIBUTION.search(short) or _ORIGINAL_MESSAGE.match(short):
            break
        own.append(line)
    return own if any(line.strip() for line in own) else []


def _drop_signature(lines: list[str]) -> list[str]:
    for index, line in enumerate(lines):
        if _SIGNATURE.match(line) or _SENT_FROM.match(line):
            lines = lines[:index]
            break
    while lines and not lines[-1].strip():
        lines.pop()
    # A closing ("Best regards,") near the end, followed only by a short name block.
    for index in range(len(lines) - 1, max(-1, len(lines) - 8), -1):
        if _CLOSING.match(lines[index]):
            after = [line for line in lines[index + 1 :] if line.strip()]
            if len(after) <= 5 and all(len(line) <= 60 for line in after) and index > 0:
                return lines[:index]
            break
    return lines
