"""Whether a message was sent by a machine, not a person: such mail is recorded but never
routed, answered or allowed to reopen a conversation, so two systems cannot answer each other
forever (RFC 3834)."""

from __future__ import annotations

from email.message import Message

from channels.email import headers

#: Precedence values of bulk and list mail (RFC 2076; never standardised, universally used).
_PRECEDENCE = frozenset({"bulk", "junk", "list"})


def automatic(msg: Message) -> str | None:
    """Why ``msg`` is automatic mail, e.g. ``"auto-submitted: auto-replied"``; None when a
    person sent it. ``Auto-Submitted: no`` says a person did and is not a signal itself."""
    submitted = (headers.raw(msg, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if submitted and submitted != "no":
        return f"auto-submitted: {submitted}"
    for name in ("X-Autoreply", "X-Autorespond", "X-Auto-Response-Suppress", "List-Id"):
        if headers.raw(msg, name) is not None:
            return name.lower()
    precedence = (headers.raw(msg, "Precedence") or "").strip().lower()
    if precedence in _PRECEDENCE:
        return f"precedence: {precedence}"
    return_path = headers.raw(msg, "Return-Path")
    if return_path is not None and return_path.replace(" ", "").strip() in ("<>", ""):
        return "return-path: <>"
    return None
