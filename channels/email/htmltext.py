"""HTML mail as text: for search, routing, and the display of HTML-only mail. (Safe HTML
for agents is :func:`channels.base.html.sanitized_html`.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

#: Elements whose content is never text a person reads.
_HIDDEN = frozenset({"script", "style", "head", "title", "template", "noscript", "svg", "xml"})
#: Elements that sit on lines of their own.
_BLOCK = frozenset(
    {
        *("address", "article", "aside", "dd", "div", "dl", "dt", "figcaption", "figure"),
        *("footer", "form", "header", "hr", "li", "main", "nav", "section", "tbody"),
        *("thead", "tfoot", "tr", "center"),
    }
)
#: Blocks followed by a blank line.
_PARAGRAPH = frozenset(
    {"p", "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "table", "ul", "ol"}
)
_CELL = frozenset({"td", "th"})
_SPACES = re.compile(r"[^\S\n]+")
_HTML_SPACE = re.compile(r"[ \t\r\n\f]+")
_BLANK_LINES = re.compile(r"\n{3,}")
_TAG = re.compile(r"<[^>]*>")


class _Text(HTMLParser):
    """Collects the readable text: HTML whitespace collapsed, a line per block, a blank line
    after a paragraph, a line break per ``<br>``, cells of a row side by side."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.trailing_newlines = 1  # the start counts as a fresh line
        self.hidden = 0
        self.pre = 0

    def newlines(self, wanted: int) -> None:
        if self.trailing_newlines < wanted:
            self.parts.append("\n" * (wanted - self.trailing_newlines))
            self.trailing_newlines = wanted

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.parts.append("\n")
            self.trailing_newlines += 1
        elif tag in _BLOCK or tag in _PARAGRAPH:
            self.newlines(1)
            self.pre += tag == "pre"
        elif tag in _CELL:
            self.parts.append(" ")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in _HIDDEN:
            self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag in _PARAGRAPH:
            self.newlines(2)
            self.pre = max(0, self.pre - (tag == "pre"))
        elif tag in _BLOCK:
            self.newlines(1)

    def handle_data(self, data: str) -> None:
        if self.hidden:
            return
        if not self.pre:
            data = _HTML_SPACE.sub(" ", data)
        if data.strip():
            self.parts.append(data)
            self.trailing_newlines = len(data) - len(data.rstrip("\n"))
        elif data and not self.trailing_newlines:
            self.parts.append(" ")


def html_to_text(html: str) -> str:
    """The text a reader sees in ``html``: hidden elements dropped, entities decoded, a line
    per block, runs of spaces collapsed and at most one blank line in a row."""
    parser = _Text()
    try:
        parser.feed(html)
        parser.close()
        text = "".join(parser.parts)
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        text = _TAG.sub(" ", html)
    lines = (_SPACES.sub(" ", line).strip() for line in text.replace("\xa0", " ").split("\n"))
    return _BLANK_LINES.sub("\n\n", "\n".join(lines)).strip()
