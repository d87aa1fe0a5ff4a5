"""The new part of a reply, apart from the quoted history and the signature below it.

No maintained library covers the six languages the hub needs (quotequail lacks Portuguese,
mail-parser-reply lacks Portuguese and Russian, talon is unmaintained), so this is a small
line matcher. History starts at the first of:

- an attribution line, possibly wrapped over up to three lines: "On … wrote:", "Le … a écrit :",
  "Em … escreveu:", "… написал(а):", "Am … schrieb …:", "El … escribió:" (and Italian, Dutch,
  and Gmail's localised "<date>, Name <address>:");
- an "Original Message" or "Forwarded message" divider, or an Outlook header block
  ("From: … / Sent: … / To: … / Subject: …" in the same languages), with the rule above it;
- a ``>``-quoted line;
- the "-- " signature separator, or a "Sent from my phone" line.

The caller keeps the full body: this only decides what the timeline shows first.
"""  # noqa: RUF002 - Cyrillic letters in Russian words are meant

from __future__ import annotations

import re

_ATTRIBUTION_START = re.compile(r"^(?:On|Le|Em|Am|El|Il|Op)\s", re.IGNORECASE)
_ATTRIBUTIONS = tuple(
    re.compile(pattern, re.IGNORECASE | re.DOTALL)
    for pattern in (
        r"On\s.+\swrote\s*:",
        r"Le\s.+\sa\s+écrit\s*:",
        r"Em\s.+\sescreveu\s*:",
        r"Am\s.+\sschrieb(?:\s.*)?:",
        r"El\s.+\sescribió\s*:",
        r"Il\s.+\sha\s+scritto\s*:",
        r"Op\s.+\sschreef(?:\s.*)?:",
    )
)
#: Russian attributions have no leading keyword; the verb ends them (Cyrillic is meant):
#: "Иван <ivan@example.ru> написал(а):", "написала:", "пишет:".  # noqa: RUF003
_RUSSIAN = re.compile(
    r".+\s(?:написал(?:а|\(а\))?|пишет)\s*:",  # noqa: RUF001
    re.IGNORECASE | re.DOTALL,
)
#: Gmail in most other languages: a date with digits, then "Name <address>:".
_DATED_ADDRESS = re.compile(r".*\d.*<[^<>\s@]+@[^<>\s]+>\s*:", re.DOTALL)
_DIVIDER = re.compile(
    r"^\s*-{2,}\s*(?:Original Message|Forwarded message|Ursprüngliche Nachricht"
    r"|Weitergeleitete Nachricht|Message d'origine|Message transféré|Mensagem original"
    r"|Mensagem encaminhada|Mensaje original|Mensaje reenviado|Исходное сообщение"
    r"|Пересылаемое сообщение|Messaggio originale)\s*-{2,}\s*$"
    r"|^\s*(?:Begin forwarded message|Anfang der weitergeleiteten (?:E-Mail|Nachricht)"
    r"|Début du message réexpédié|Início da mensagem reencaminhada"
    r"|Inicio del mensaje reenviado)\s*:\s*$",
    re.IGNORECASE,
)
_RULE = re.compile(r"^\s*(?:_{10,}|-{10,})\s*$")
_FROM_FIELD = re.compile(r"^\s*\*?\s*(?:From|De|Von|От|Van|Da|Od)\s*:", re.IGNORECASE)
_OTHER_FIELD = re.compile(
    r"^\s*\*?\s*(?:Sent|Date|To|Cc|Subject|Envoyé|Date|À|Objet|Gesendet|Datum|An|Betreff"
    r"|Enviado(?: el| em)?|Enviada em|Fecha|Para|Asunto|Assunto|Data|Отправлено|Дата"
    r"|Кому|Копия|Тема|Inviato|Oggetto|Verzonden|Aan|Onderwerp)\s*:",
    re.IGNORECASE,
)
_SIGNATURE = re.compile(r"^--\s?$")
_BLANK_LINES = re.compile(r"\n{3,}")
_SENT_FROM = re.compile(
    r"^\s*(?:Sent from my|Get Outlook for|Envoyé de mon|Enviado do meu|Enviado desde mi"
    r"|Von meinem .+ gesendet|Gesendet von meinem|Отправлено с)\b.{0,60}$",  # noqa: RUF001
    re.IGNORECASE,
)
#: How many lines an attribution may be wrapped over, and how far apart Outlook's fields are.
_WRAPPED_LINES = 3
#: Attributions are short; longer lines are not tried (and cannot make the patterns slow).
_MAX_ATTRIBUTION = 400
_HEADER_WINDOW = 4


def new_part(text: str) -> tuple[str, str]:
    """``(new, history)``: what the sender wrote in this message, and the quoted history and
    signature after it. A bottom-posted reply (quotes first) has its unquoted lines as new."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    start = _history_start(lines)
    if start is None:
        return text.strip(), ""
    new = "\n".join(lines[:start]).strip()
    if not new:
        return _bottom_posted(lines)
    return new, "\n".join(lines[start:]).strip()


def _history_start(lines: list[str]) -> int | None:
    for index, line in enumerate(lines):
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith(">") or _SIGNATURE.match(line) or _SENT_FROM.match(line):
            return index
        if _DIVIDER.match(line) or _attribution(lines, index) or _outlook_block(lines, index):
            return _rule_above(lines, index)
    return None


def _attribution(lines: list[str], index: int) -> int:
    """How many lines the attribution starting at ``index`` spans (0: none there)."""
    for count in range(1, _WRAPPED_LINES + 1):
        chunk = lines[index : index + count]
        if len(chunk) < count or (count > 1 and not chunk[-1].strip()):
            break
        joined = " ".join(part.strip() for part in chunk)
        if len(joined) > _MAX_ATTRIBUTION:
            break
        if _ATTRIBUTION_START.match(joined) and any(p.fullmatch(joined) for p in _ATTRIBUTIONS):
            return count
        if _RUSSIAN.fullmatch(joined) or _DATED_ADDRESS.fullmatch(joined):
            return count
    return 0


def _outlook_block(lines: list[str], index: int) -> bool:
    """A "From:" field followed closely by Sent/Date/To/Subject fields: a quoted header block."""
    if not _FROM_FIELD.match(lines[index]):
        return False
    following = lines[index + 1 : index + 1 + _HEADER_WINDOW]
    return sum(1 for line in following if _OTHER_FIELD.match(line)) >= 2


def _rule_above(lines: list[str], index: int) -> int:
    """``index``, or the horizontal rule (Outlook's underscores) just above it."""
    above = index - 1
    while above >= 0 and not lines[above].strip():
        above -= 1
    return above if above >= 0 and _RULE.match(lines[above]) else index


def _bottom_posted(lines: list[str]) -> tuple[str, str]:
    """A reply written below the quote: its unquoted lines are new; the quoted lines, their
    attribution and everything from the signature separator on are history."""
    new: list[str] = []
    history: list[str] = []
    index = 0
    while index < len(lines):
        line = lines[index]
        if _SIGNATURE.match(line) or _SENT_FROM.match(line):
            history.extend(lines[index:])
            break
        skip = 1 if line.lstrip().startswith(">") else _attribution(lines, index)
        (history if skip else new).extend(lines[index : index + (skip or 1)])
        index += skip or 1
    return _BLANK_LINES.sub("\n\n", "\n".join(new)).strip(), "\n".join(history).strip()
