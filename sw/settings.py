"""Strict settings: a JSON settings file read in one checked step, and each field (a
command-line option, a recipe key) checked against its type and range as JSON means them: a bool
is not an integer, a float or a string is not an integer, a number is finite. Errors are one line
naming the file or the field, what was expected and what was found.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable
from pathlib import Path

from sw.cli import one_line

__all__ = ["InvalidSetting", "SettingsFileError", "check_bool", "check_integer", "check_number",
           "found", "read_json"]


class InvalidSetting(ValueError):
    """A settings field of the wrong type or out of range; ``field`` names it."""

    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field


def found(value: object) -> str:
    """``value`` for an error message: scalars as ``repr`` (control characters escaped, long
    strings cut), containers by kind and size (a deeply nested one is never walked)."""
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    if isinstance(value, dict):
        return f"an object of {len(value)} keys"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** 30:
        return f"an integer of about {int(value.bit_length() * math.log10(2)) + 1} digits"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_integer(field: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    """Raise :class:`InvalidSetting` unless ``value`` is an ``int`` (not a bool) in
    ``[minimum, maximum]``."""
    if (isinstance(value, bool) or not isinstance(value, int) or value < minimum
            or (maximum is not None and value > maximum)):
        if maximum is not None:
            kind = f"an integer in [{minimum}, {maximum}]"
        else:
            kind = {0: "a non-negative integer", 1: "a positive integer"}.get(
                minimum, f"an integer >= {minimum}")
        raise InvalidSetting(field, f"{field} must be {kind}, not {found(value)}")


def check_number(field: str, value: object, expected: str,
                 accept: Callable[[float], bool] = lambda value: True) -> None:
    """Raise :class:`InvalidSetting` unless ``value`` is a finite ``int`` or ``float`` (not a
    bool) that ``accept`` takes; ``expected`` describes the domain (``"a finite number > 0"``)."""
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not math.isfinite(value)) or not accept(value)):
        raise InvalidSetting(field, f"{field} must be {expected}, not {found(value)}")


def check_bool(field: str, value: object) -> None:
    """Raise :class:`InvalidSetting` unless ``value`` is ``True`` or ``False`` (a string such as
    ``"yes"`` or a number is refused, not taken for its truth value)."""
    if not isinstance(value, bool):
        raise InvalidSetting(field, f"{field} must be true or false, not {found(value)}")


class SettingsFileError(ValueError):
    """A settings file that cannot be read as JSON; the message starts with its path."""


def read_json(path) -> object:
    """The JSON document in the file at ``path``, read strictly.

    Raises
    ------
    SettingsFileError
        One line naming the file: unreadable, not UTF-8, not JSON (with line and column), an
        integer literal too long to convert, or nesting too deep to parse.
    """
    path = Path(path)
    shown = one_line(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise SettingsFileError(f"{shown}: cannot read it: {error.strerror or error}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise SettingsFileError(f"{shown}: not UTF-8 text (byte 0x{data[error.start]:02x} at "
                                f"offset {error.start})") from None
    try:
        return json.loads(text)
    except RecursionError:
        raise SettingsFileError(f"{shown}: not valid JSON: nested too deeply") from None
    except json.JSONDecodeError as error:
        raise SettingsFileError(f"{shown}: not valid JSON: {error.msg} at line {error.lineno} "
                                f"column {error.colno}") from None
    except ValueError:      # Python's limit on the digits of an integer literal
        raise SettingsFileError(f"{shown}: not valid JSON: an integer literal of more than "
                                f"{sys.get_int_max_str_digits()} digits") from None
