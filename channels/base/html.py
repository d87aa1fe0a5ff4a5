"""Message HTML made safe to show agents (nh3, Ammonia's sanitizer), whatever channel it came
by: what a customer sends is untrusted, so no scripts, handlers, forms, or remote resources
until the agent asks."""

from __future__ import annotations

from collections.abc import Callable

import nh3

#: Attributes kept beyond nh3's defaults: layout that mail relies on, no scripting, no URLs.
_ATTRIBUTES: dict[str, set[str]] = {
    **{tag: set(attrs) for tag, attrs in nh3.ALLOWED_ATTRIBUTES.items()},
    "*": {"style", "dir", "lang", "title"},
    "img": {"src", "alt", "width", "height", "align"},
    "td": {*nh3.ALLOWED_ATTRIBUTES.get("td", set()), "width", "height", "valign", "bgcolor"},
    "table": {*nh3.ALLOWED_ATTRIBUTES.get("table", set()), "width", "cellpadding", "border"},
    "font": {"color", "face", "size"},
}
#: CSS properties kept in style attributes: none of them can load a resource.
_STYLES = frozenset(
    {
        *("color", "background-color", "font", "font-family", "font-size", "font-style"),
        *("font-weight", "text-align", "text-decoration", "text-indent", "line-height"),
        *("margin", "margin-left", "margin-right", "margin-top", "margin-bottom", "padding"),
        *("padding-left", "padding-right", "padding-top", "padding-bottom", "border"),
        *("border-left", "border-right", "border-top", "border-bottom", "border-collapse"),
        *("width", "height", "vertical-align", "white-space", "direction", "display"),
    }
)
_REMOTE = ("http:", "https:")
_RESOURCE_IN_CSS = ("url(", "image-set(", "expression(", "@import")


def _attribute_filter(remote_images: bool) -> Callable[[str, str, str], str | None]:
    def keep(element: str, attribute: str, value: str) -> str | None:
        lowered = value.strip().lower()
        if element == "img" and attribute == "src":
            if lowered.startswith("cid:"):
                return value
            return value if remote_images and lowered.startswith(_REMOTE) else None
        if attribute == "style" and any(marker in lowered for marker in _RESOURCE_IN_CSS):
            return None
        return value

    return keep


def _cleaner(remote_images: bool) -> nh3.Cleaner:
    return nh3.Cleaner(
        tags={*nh3.ALLOWED_TAGS, "font"},
        attributes=_ATTRIBUTES,
        attribute_filter=_attribute_filter(remote_images),
        url_schemes={"http", "https", "mailto", "tel", "cid"},
        url_relative="deny",
        filter_style_properties=set(_STYLES),
        strip_comments=True,
        link_rel="noopener noreferrer nofollow",
    )


_CLEANERS = {False: _cleaner(remote_images=False), True: _cleaner(remote_images=True)}


def sanitized_html(html: str, *, remote_images: bool = False) -> str:
    """``html`` safe to show an agent (nh3): no scripts, event handlers, forms or
    ``javascript:`` URLs; ``cid:`` images kept (the hub serves them from its store); remote
    images, tracking pixels among them, dropped until the agent asks (``remote_images``)."""
    return _CLEANERS[remote_images].clean(html)
