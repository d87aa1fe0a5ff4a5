"""The DKIM, SPF and DMARC verdicts our receiving server wrote in ``Authentication-Results``
(RFC 8601): a message that fails DMARC is shown with a warning and its From address is never
trusted to link identities."""

from __future__ import annotations

import re
from email.message import Message

from channels.email import headers

#: The methods recorded; ARC too, as forwarding services rely on it.
METHODS = ("dkim", "spf", "dmarc", "arc")
_COMMENT = re.compile(r"\([^()]*\)")
_RESULT = re.compile(r"^\s*([a-z0-9-]+)(?:\s*/\s*\d+)?\s*=\s*([a-z0-9-]+)", re.IGNORECASE)
#: Nested comments are peeled one level per pass; deeper nesting than this is left alone.
_MAX_NESTING = 5


def _strip_comments(value: str) -> str:
    for _ in range(_MAX_NESTING):
        stripped = _COMMENT.sub(" ", value)
        if stripped == value:
            break
        value = stripped
    return value


def _parse(value: str) -> tuple[str, list[tuple[str, str]]]:
    """(authserv-id, [(method, result), …]) of one header field."""
    server, _, rest = _strip_comments(value).partition(";")
    results = []
    for clause in rest.split(";"):
        match = _RESULT.match(clause)
        if match:
            results.append((match.group(1).lower(), match.group(2).lower()))
    parts = server.split()
    return (parts[0].lower() if parts else ""), results


def authentication(msg: Message, authserv_id: str | None = None) -> dict[str, str]:
    """``{"dkim": "pass", "spf": "fail", "dmarc": "pass", …}`` from the fields written by
    ``authserv_id`` (by default the server that added the topmost field, the one that
    received the message: fields further down were written by others and prove nothing).

    Per method the topmost verdict counts, so a field that claims our server's name but
    arrived inside the message cannot overrule ours (the receiving server should remove
    such fields anyway, RFC 8601 §5); of several DKIM signatures in one field, one passing
    is enough."""
    fields = [_parse(value) for value in headers.raw_all(msg, "Authentication-Results")]
    if not fields:
        return {}
    trusted = (authserv_id or fields[0][0]).lower()
    found: dict[str, str] = {}
    for server, results in fields:
        if server != trusted:
            continue
        verdicts: dict[str, str] = {}
        for method, result in results:
            if method in METHODS and (
                method not in verdicts or (method == "dkim" and result == "pass")
            ):
                verdicts[method] = result
        found = {**verdicts, **found}
    return found


def dmarc_failed(results: dict[str, str]) -> bool:
    """Whether DMARC said the From domain was forged (``fail``; not ``none`` or errors)."""
    return results.get("dmarc") == "fail"
