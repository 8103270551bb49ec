"""Strings from files (names in a report.json, file names, paths) made safe for the terminal.

A tampered report.json or a file name can hold terminal escape sequences (ESC ``[2J`` clears the
screen, OSC ``]0;...`` sets the window title) and rich markup (``[/]`` is a closing tag, an error in
rich; ``[link=...]`` is a hyperlink). Every untrusted string the CLI prints goes through
:func:`plain` (printed with ``markup=False``) or :func:`term` (inside rich markup or a rich Table),
as the HTML report escapes them with ``html.escape``.
"""

from __future__ import annotations

import re

# C0 controls (newline and tab included: a name is one line), DEL, and the C1 controls (0x9b is a
# one-byte CSI on some terminals); also the Unicode line and paragraph separators and bidi overrides
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def _escape_char(m: re.Match) -> str:
    c = m.group(0)
    return f"\\x{ord(c):02x}" if ord(c) <= 0xFF else f"\\u{ord(c):04x}"


def plain(text: object) -> str:
    """``text`` with every control character written as its escape (``\\x1b``), for printing with
    ``markup=False``."""
    return _CONTROL.sub(_escape_char, str(text))


def term(text: object) -> str:
    """``text`` for rich markup or a rich Table: control characters escaped and ``[`` of markup
    escaped, so it prints exactly as written."""
    from rich.markup import escape

    return escape(plain(text))
