"""Where a page may send the browser next: only somewhere on this site (no open redirect).

``next`` comes from the URL, so anyone can write it. Browsers read URLs the WHATWG way: they drop
tabs and newlines anywhere (``/%09/evil`` is ``//evil``), trim spaces and control characters at
the ends, and read a backslash as a slash (``/\\evil`` is ``//evil``). The check reads ``next``
the same way first, then accepts only a path on this origin.
"""

from __future__ import annotations

import re
from urllib.parse import quote, urlsplit

_TAB_OR_NEWLINE = re.compile(r"[\t\n\r]")
_TRIMMED = "".join(chr(c) for c in range(0x21))  # C0 controls and space, as WHATWG trims
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
# Characters a path, query or fragment keeps as they are; anything else is percent-encoded.
_SAFE = "/?#&=+;:@!$'()*,-._~%"
MAX_TARGET_LENGTH = 2048


def local_target(next_url: str | None) -> str | None:
    """``next_url`` as a path on this site (path, query and fragment, never a host), or None when
    it is empty, too long, or would leave the site."""
    if not next_url or len(next_url) > MAX_TARGET_LENGTH:
        return None
    cleaned = _TAB_OR_NEWLINE.sub("", next_url).strip(_TRIMMED).replace("\\", "/")
    if _CONTROL.search(cleaned):
        return None
    # A path on this origin starts with exactly one slash: "//host" and "scheme:" leave it.
    if not cleaned.startswith("/") or cleaned.startswith("//"):
        return None
    parts = urlsplit(cleaned)
    if parts.scheme or parts.netloc or not parts.path.startswith("/"):
        return None
    target = quote(parts.path, safe=_SAFE)
    if target.startswith("//"):  # cannot happen after the checks above; never emit one
        return None
    if parts.query:
        target += "?" + quote(parts.query, safe=_SAFE)
    if parts.fragment:
        target += "#" + quote(parts.fragment, safe=_SAFE)
    return target
