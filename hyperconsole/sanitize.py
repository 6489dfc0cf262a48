"""The one door for text from libvirt or the system on its way to the terminal.

Names, descriptions, mount points, interface names, journal lines and rebuild output may hold
bytes a terminal acts on: `ESC ] 0 ; … BEL` retitles the window, `ESC [ 2 J` clears it, U+202E
reverses what follows. `visible()` replaces every such character with its escape (`\\x1b`,
`\\u202e`), so it is seen, not obeyed; ordinary text, including non-ASCII letters, is unchanged.
"""

from __future__ import annotations

import re

# Control (Cc), format (Cf: bidi overrides, zero-width characters), line/paragraph separators
# (Zl, Zp) and surrogates (Cs) of the Unicode database; tests/unit/core/test_sanitize.py checks
# this list against unicodedata so it stays complete without scanning every code point at import.
_INVISIBLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890\u0891\u08e2\u180e"
    "\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ud800-\udfff\ufeff\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3\U0001d173-\U0001d17a"
    "\U000e0001\U000e0020-\U000e007f]"
)
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match[str]) -> str:
    ch = match.group()
    if ch in _SHORT:
        return _SHORT[ch]
    code = ord(ch)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def visible(text: object) -> str:
    """`text` as a string with every control, format and separator character shown as its
    escape; None is the empty string."""
    if text is None:
        return ""
    if not isinstance(text, str):
        text = str(text)
    if text.isprintable():  # the common case, decided in C: nothing to escape
        return text
    return _INVISIBLE.sub(_escape, text)


def visible_lines(text: object) -> str:
    """visible() line by line, for text that is meant to span lines (a dialog's detail, a diff,
    a toast): line breaks stay line breaks, everything else is escaped."""
    return "\n".join(visible(line) for line in ("" if text is None else str(text)).split("\n"))
