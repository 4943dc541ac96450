"""Text read from a user's file made safe to echo in a one-line error message.

A key or a value copied from a file into a message may hold a newline (which would start a
spoofed second ``error:`` line), a terminal escape sequence (colours, cursor moves, a changed
window title), a bidirectional override that reorders what the terminal shows, or a megabyte of
text. :func:`printable` escapes every such character the way Python's ``repr`` does and
shortens long text, so that what reaches the terminal is exactly one line of visible characters.
"""

from __future__ import annotations

__all__ = ["printable", "printable_int"]

_NAMED_ESCAPES = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(char: str) -> str:
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if char.isprintable():
        return char
    code = ord(char)
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def printable(text: object, limit: int = 60) -> str:
    """``text`` with every non-printable character escaped and at most ``limit`` characters of
    it shown (then ``...``).

    Backslashes are doubled, so that an escape shown always stands for a character that was
    not printable. A non-string is shown as its ``str``.

    >>> printable("tokens\\nerror: spoofed\\x1b[31m")
    'tokens\\\\nerror: spoofed\\\\x1b[31m'
    >>> printable("x" * 70, limit=8)
    'xxxxxxxx...'
    """
    text = str(text)
    shown = "".join(_escape(char) for char in text[:limit])
    return shown + "..." if len(text) > limit else shown


def printable_int(value: int) -> str:
    """An integer as decimal digits, or, beyond 64 bits, as its size (Python refuses to turn an
    integer of more than 4300 digits into a string, and a thousand digits help no reader).

    >>> printable_int(-3)
    '-3'
    >>> printable_int(10 ** 5000)
    'an integer of 16610 bits'
    """
    if value.bit_length() <= 64:
        return str(value)
    sign = "a negative" if value < 0 else "an"
    return f"{sign} integer of {value.bit_length()} bits"
