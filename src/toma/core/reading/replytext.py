"""The new text of a reply: quoted history and signature removed.

Mail clients mark the start of quoted history in a handful of ways, in the
writer's language:

- an attribution line: "On Mon, 2 Apr 2012, Bob wrote:", "Am … schrieb …:",
  "Le … a écrit :", "15. marts 2017 kl. 11.00 skrev Bob <bob@x>:", Gmail's
  "Bob <bob@x> schrieb am So., 23. Juni 2024:", Russian Gmail's bare
  "ср, 30 апр. 2025 г. в 15:19, Bob <bob@x>:", Zoho's "---- On … wrote ----";
- the same attribution folded over two or three lines, the address (in angle
  brackets, or as a ``mailto:``) or the verb on the next ones;
- a separator ("-----Original Message-----", "-------- Message d'origine
  --------", "---------- Forwarded message ---------", "Begin forwarded
  message:");
- a header block ("From: … / Sent: … / To: … / Subject: …", "Von: … Gesendet:
  …", "De : … Envoyé le : …", "发件人: …"), plain, bold ("*From:* … *Sent:* …",
  as Gmail renders Outlook's HTML) or indented, or all on one line;
- lines starting with ">".

The text is cut at the first of these. Replies written *between* quoted lines
keep their own lines ("> question\\nanswer"); quoted lines are those starting
with ">", and, when the history's first line is indented, those indented as
deep (history quoted with spaces instead of ">"). A quoted line wrapped by the
writer's program ("> a long line that goes\\non here") is not an answer.

Then the end of what is left goes, when a signature, a mail program's footer, a
closing or the writer's name (see :mod:`toma.core.reading.signoff`). HTML-only
mail is made plain first (see :func:`toma.core.reading.plaintext.html_to_text`),
which already drops ``<blockquote>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from toma.core.reading.signoff import drop_signoff

# Every rule here is written to cost time linear in the line it reads: no two
# runs that can match the same characters side by side ("\s*:?\s*" is written
# "\s*(?::\s*)?"), and lines are read by the rules only up to a bound.

_VERBS = (
    r"wrote|writes|schrieb|schreef|a écrit|a ecrit|escribió|escribio|ha scritto|scrisse|"
    r"escreveu|skrev|skriver|napisał\(a\)|napisał|napisała|pisze|написал\(а\)|написал|"
    r"написала|kirjoitti|napsal\(a\)|napsal|napsala|yazdı|írta|ezt írta|het volgende geschreven|"
    r"het volgende"
)
# "… wrote:", "… wrote ----" (Zoho), "… a écrit :".
_WROTE_END = rf"(?:{_VERBS})\s*(?::\s*)?(?:-{{2,}}\s*)?$"
# An attribution is a line ending in "wrote:" and its kin. It was written as
# "^\s*(?:>+\s*)?(?:-{2,}\s*)?(?:on\b.*|am\b.*|…|.*<[^>]*@[^>]*>.*|.*\S+@\S+.*|.*)"
# followed by the verb; since the last choice, ".*", takes any start, the
# others never changed what matched — but they made a failing match cost up to
# the fourth power of the line (200 characters of "<@>": 8 s). The search
# below matches exactly the same lines.
_ATTRIBUTION = re.compile(_WROTE_END, re.IGNORECASE)
# "Am 20.11.2026 um 10:00 schrieb Bob <bob@x>:" — the verb before the name.
_ATTRIBUTION_VERB_FIRST = re.compile(
    r"^\s*(?:am|op|den|le|el|il|em|w dniu|dnia|dne|on)\b.{0,200}\b(?:schrieb|schreef|skrev|"
    r"skriver|a écrit|escribió|escreveu|ha scritto|napisał|napsal|wrote)\b.{0,200}:\s*$",
    re.IGNORECASE,
)
_VERB = re.compile(rf"(?:^|\s)(?:{_VERBS})(?:\s|$)", re.IGNORECASE)
# An address as attributions give it: "<bob@x>", "(bob@x)", "[mailto:bob@x]".
_ADDRESS = re.compile(
    r"<[^<>\s]{1,200}@[^<>\s]{1,200}>|\(<?[^()\s]{1,200}@[^()\s]{1,200}\)|mailto:"
)
_DIGIT = re.compile(r"\d")
# "On Sun, Jun 9, 2013 at 1:39 PM, eviltrout via Discourse Meta\n<reply@…> wrote:"
_ATTRIBUTION_START = re.compile(
    r"^\s*(?:-{2,}\s*)?(?:on|am|le|el|il|op|em|den|dne|w dniu|dnia|in data)\s+.{3,}",
    re.IGNORECASE,
)
_ORIGINAL_MESSAGE = re.compile(
    r"^\s*[-_=]{2,}\s*(?:original message|original-nachricht|ursprüngliche nachricht|"
    r"message d'origine|message original|mensaje original|messaggio originale|"
    r"oorspronkelijk bericht|origineel bericht|mensagem original|originalmeddelelse|"
    r"oprindelig besked|oprindelig meddelelse|ursprungligt meddelande|opprinnelig melding|"
    r"alkuperäinen viesti|wiadomość oryginalna|oryginalna wiadomość|původní zpráva|"
    r"eredeti üzenet|исходное сообщение|reply message|original e-?mail|forwarded message|"
    r"weitergeleitete nachricht|message transféré|mensaje reenviado|messaggio inoltrato|"
    r"doorgestuurd bericht|mensagem encaminhada|vidarebefordrat meddelande|"
    r"videresendt meddelelse|przekazana wiadomość|přeposlaná zpráva|továbbított üzenet)"
    r"\s*[-_=]*\s*$",
    re.IGNORECASE,
)
_FORWARD_INTRO = re.compile(
    r"^\s*(?:begin forwarded message|anfang der weitergeleiteten nachricht|"
    r"début du message réenvoyé|début du message transféré|inicio del mensaje reenviado|"
    r"inizio messaggio inoltrato|begin doorgestuurd bericht|início da mensagem reencaminhada|"
    r"vidarebefordrat brev|videresendt besked)\s*:\s*$",
    re.IGNORECASE,
)
# Field names, plain, bold ("*From:*", "**From**:") or with a space before the colon.
_FIELD_END = r"\s*(?:\*{1,2}\s*)?:(?:\*{1,2})?"
_FROM_NAMES = r"from|von|de|da|van|från|fra|od|lähettäjä|от|kimden|feladó|差出人|发件人|寄件者"
_FROM_FIELD = re.compile(rf"^\s*\*{{0,2}}(?:{_FROM_NAMES}){_FIELD_END}", re.IGNORECASE)
_OTHER_FIELD = re.compile(
    r"^\s*\*{0,2}(?:sent|date|to|cc|subject|gesendet|datum|an|betreff|envoyé|envoye|"
    r"envoyé le|envoye le|date|à|a|objet|enviado|enviada em|enviado em|fecha|para|asunto|"
    r"assunto|inviato|data|oggetto|a|verzonden|aan|onderwerp|skickat|till|ämne|sendt|til|"
    r"emne|dato|wysłano|do|temat|lähetetty|vastaanottaja|aihe|odesláno|komu|předmět|"
    r"elküldve|címzett|tárgy|dátum|отправлено|кому|тема|送信日時|宛先|件名|发送时间|日期|"
    r"收件人|主题)" + _FIELD_END,
    re.IGNORECASE,
)
# "Date: … From: … To: … Subject: …" on a single line: these three field names, in order.
_ONE_LINE_FIELDS = (
    re.compile(r"(?:^|\s)(?:from|von|de)\s?:", re.IGNORECASE),
    re.compile(r"\s(?:to|an|à|para)\s?:", re.IGNORECASE),
    re.compile(r"\s(?:subject|betreff|objet|asunto|assunto|oggetto)\s?:", re.IGNORECASE),
)
_OUTLOOK_RULE = re.compile(r"^\s*_{10,}\s*$")
_QUOTE_WRAP = 60  # a quoted line this long may have been wrapped by the writer's program


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
    kept = drop_signoff(kept)
    result = "\n".join(kept)
    return re.sub(r"\n{3,}", "\n\n", result).strip()


def _quoted(line: str, indent: int = 0) -> bool:
    if line.lstrip().startswith(">"):
        return True
    return indent > 1 and len(line) - len(line.lstrip()) >= indent


def _history_start(lines: list[str], check: Callable[[], None]) -> int:
    """Index of the first line of quoted history, or len(lines)."""
    for index, line in enumerate(lines):
        if index % _CHECK_EVERY == 0:
            check()
        stripped = line.strip()
        if not stripped or len(stripped) > 400:
            continue  # attributions and separators are short; long lines are text
        if _ORIGINAL_MESSAGE.match(stripped) or _FORWARD_INTRO.match(stripped):
            return index
        if _OUTLOOK_RULE.match(stripped) and _header_block(lines, index + 1):
            return index
        if not _quoted(stripped) and _attribution(stripped):
            return index
        if _folded_attribution(lines, index):
            return index
        if _FROM_FIELD.match(stripped) and _header_block(lines, index):
            return index
        if index > 0 and _one_line_header(stripped):
            return index
    return len(lines)


def _attribution(line: str) -> bool:
    """True if *line* (stripped, at most 400 characters) introduces quoted history."""
    if _ATTRIBUTION.search(line) or _ATTRIBUTION_VERB_FIRST.match(line):
        return True
    if not line.endswith(":") or not _DIGIT.search(line) or not _ADDRESS.search(line):
        return False
    # A date and an address in brackets, and a verb ("… skrev Bob <bob@x>:", "Bob
    # <bob@x> schrieb am So., 23. Juni 2024, 21:08:") or none at all, the address
    # last ("ср, 30 апр. 2025 г. в 15:19, Bob <bob@x>:").
    return bool(_VERB.search(line)) or line[:-1].rstrip().endswith((">", ")"))


def _one_line_header(line: str) -> bool:
    position = 0
    for field in _ONE_LINE_FIELDS:
        found = field.search(line, position)
        if found is None:
            return False
        position = found.end()
    return True


def _folded_attribution(lines: list[str], index: int) -> bool:
    """An attribution folded over two or three lines ("On …, Bob\n<bob@x> wrote:")."""
    stripped = lines[index].strip()
    if _quoted(stripped) or (stripped.endswith((".", "?", "!")) and not _ADDRESS.search(stripped)):
        return False  # a sentence, unless it names an address ("Bob <bob@x> schrieb am So., 23.")
    if not (_ATTRIBUTION_START.match(stripped) or _DIGIT.search(stripped) or "@" in stripped):
        return False
    for width in (2, 3):
        parts = [part.strip() for part in lines[index + 1 : index + width]]
        if len(parts) < width - 1 or not all(parts):
            return False
        last = parts[-1]
        # A line that is a whole attribution alone starts with "On"/"Am"/… or has a
        # date outside the address ("<reply+1234@x> wrote:" is only the fold's end).
        whole = _attribution(last) and (
            _ATTRIBUTION_START.match(last) or _DIGIT.search(_ADDRESS.sub("", last))
        )
        if whole or _ATTRIBUTION_START.match(parts[0]):
            return False  # the attribution starts further down: the line here is text
        candidate = " ".join([stripped, *parts]).replace("< ", "<").replace(" >", ">")
        if len(candidate) < 400 and _attribution(candidate):
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
    indent = len(tail[0]) - len(tail[0].lstrip())
    body = tail[1:]
    first_quote = next((i for i, line in enumerate(body) if _quoted(line, indent)), None)
    if first_quote is None:
        return []
    own: list[str] = []
    previous = ""
    for line in body[first_quote:]:
        if _quoted(line, indent):
            previous = line
            continue
        short = line.strip() if len(line) <= 400 else ""
        if _FROM_FIELD.match(short) or _attribution(short) or _ORIGINAL_MESSAGE.match(short):
            break
        if len(previous.strip()) >= _QUOTE_WRAP and short[:1].islower():
            continue  # the rest of a quoted line the writer's program wrapped
        previous = ""
        own.append(line)
    return own if any(line.strip() for line in own) else []
